#!/usr/bin/env bash
# The overlapped gradient reduction (docs/distributed.md, "Overlap") against the reduction after
# the backward: SmolLM2-135M (GGUF -> NF4), LoRA r = 16 on all 7 projections, AdamW, 2 MPI ranks
# with 1 thread each, one packed 256-token row of Demo/larkspur.jsonl per rank and step (equal
# rows, so no rank waits for a longer micro-batch of the other). The two runs alternate
# (overlap, --no-overlap, overlap, ...) so a change in the machine's load hits both; each prints
# the median step time and the median time a step waited after its last backward (steps after
# the first), from --log-json. The adapters of every run must be the same bytes.
# usage: Benchmarks/mpi/run_overlap.sh [steps] [rounds] (default 6 and 2); needs make model and a release build.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
steps="${1:-6}"
rounds="${2:-2}"
qlora="$root/.build/release/qlora"
model="$root/models/SmolLM2-135M-Instruct.Q4_1.gguf"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
common=(train --model "$model" --data "$root/Demo/larkspur.jsonl" --batch-size 1 --steps "$steps" --optimizer adamw --lr 2e-4
        --rank 16 --alpha 32 --seed 1 --threads 1 --grad-accum 1 --seq-len 256 --packing)
run() {  # name, extra flags...
  local name="$1"; shift
  OMPI_MCA_btl_vader_single_copy_mechanism=none mpirun --allow-run-as-root --oversubscribe -np 2 \
    "$qlora" "${common[@]}" "$@" --out "$work/$name" --log-json "$work/$name.jsonl" > "$work/$name.out" 2> "$work/$name.err"
}
for r in $(seq 1 "$rounds"); do
  run "on-$r"
  run "off-$r" --no-overlap
done
same=yes
for f in "$work"/*/adapter_model.safetensors; do cmp -s "$f" "$work/on-1/adapter_model.safetensors" || same=NO; done
python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
for mode in ("on", "off"):
    steps, waits = [], []
    for r in range(1, rounds + 1):
        lines = [json.loads(l) for l in open(f"{work}/{mode}-{r}.jsonl")][1:]
        steps += [l["step_ms"] for l in lines]; waits += [l["reduce_wait_ms"] for l in lines]
    label = "overlapped" if mode == "on" else "after the backward (--no-overlap)"
    print(f"{label:36s} step {statistics.median(steps):8.1f} ms (median of {len(steps)}), waited after the backward "
          f"{statistics.median(waits):7.1f} ms (min {min(waits):.1f}, max {max(waits):.1f})")
    print(f"  steps {steps}\n  waits {waits}")
PY
echo "same adapter bytes in every run: $same"
