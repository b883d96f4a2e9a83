#!/usr/bin/env bash
# 1 vs 2 ranks on this machine (docs/distributed.md, README): the same global batches (2 chats of
# Demo/larkspur.jsonl per step, SmolLM2-135M, LoRA r = 16 on all 7 projections, AdamW) trained
#   (a) in one process with 2 threads and --grad-accum 2,
#   (b) on 2 MPI ranks with 1 thread each and --grad-accum 1 (each rank one chat per step),
#   (c) in one process with 1 thread and --grad-accum 2 (the single-core baseline).
# (a) and (b) must write the same adapter bytes. Prints the training seconds and the ratios.
# usage: Benchmarks/mpi/run_scaling.sh [steps] (default 4); needs make model and a release build.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
steps="${1:-4}"
qlora="$root/.build/release/qlora"
model="$root/models/SmolLM2-135M-Instruct.Q4_1.gguf"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
common=(train --model "$model" --data "$root/Demo/larkspur.jsonl" --batch-size 1 --steps "$steps" --optimizer adamw --lr 2e-4
        --rank 16 --alpha 32 --seed 1)
seconds() { sed -n 's/.* in \([0-9.]*\) s:.*/\1/p' "$1"; }
"$qlora" "${common[@]}" --threads 2 --grad-accum 2 --out "$work/a" > "$work/a.out" 2> "$work/a.err"
OMPI_MCA_btl_vader_single_copy_mechanism=none mpirun --allow-run-as-root --oversubscribe -np 2 \
  "$qlora" "${common[@]}" --threads 1 --grad-accum 1 --out "$work/b" > "$work/b.out" 2> "$work/b.err"
"$qlora" "${common[@]}" --threads 1 --grad-accum 2 --out "$work/c" > "$work/c.out" 2> "$work/c.err"
cmp -s "$work/a/adapter_model.safetensors" "$work/b/adapter_model.safetensors" && same=yes || same=NO
a=$(seconds "$work/a.out"); b=$(seconds "$work/b.out"); c=$(seconds "$work/c.out")
echo "steps $steps (2 chats each), training seconds: 1 process x 2 threads $a | 2 ranks x 1 thread $b | 1 process x 1 thread $c"
echo "same adapter bytes (a) vs (b): $same"
python3 -c "a,b,c=$a,$b,$c; print(f'2 ranks x 1 thread vs 1 process x 2 threads: {a/b:.2f}x the speed; vs 1 thread: {c/b:.2f}x (2 threads in one process: {c/a:.2f}x)')"
