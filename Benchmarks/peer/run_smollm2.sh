#!/usr/bin/env bash
# SmolLM2-135M: qlora-bench --llama and smollm2_peer.py (transformers, bitsandbytes + PEFT,
# llama.cpp) interleaved, round by round, so both see the same load on a shared machine; writes
# Benchmarks/results/smollm2.md with each round's ratios and their median. Not run by CI.
#   PEER_PYTHON=/path/to/venv/bin/python Benchmarks/peer/run_smollm2.sh [MODEL.gguf]
# env: THREADS (2), ROUNDS (3), RUNS per case (3), PEER_PYTHON (python3 with torch, transformers,
# peft, bitsandbytes, llama-cpp-python).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
model="${1:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
threads="${THREADS:-2}" rounds="${ROUNDS:-3}" runs="${RUNS:-3}"
py="${PEER_PYTHON:-python3}"
bench="$root/.build/release/qlora-bench"
[ -f "$model" ] || { echo "no model at $model (make model)" >&2; exit 1; }
[ -x "$bench" ] || { echo "build qlora-bench first: swift build -c release -Xswiftc -enable-testing --product qlora-bench" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for i in $(seq "$rounds"); do
  echo "round $i/$rounds" >&2
  "$bench" --llama "$model" --threads "$threads" --runs "$runs" --json "$work/ours.$i.json" >&2
  "$bench" --llama "$model" --threads "$threads" --runs "$runs" --train-only --compute-type bf16 --json "$work/oursbf16.$i.json" >&2
  "$py" "$here/smollm2_peer.py" --gguf "$model" --threads "$threads" --runs "$runs" --json "$work/peer.$i.json" >&2
done
out="$root/Benchmarks/results/smollm2.md"
python3 "$here/smollm2_report.py" "$work" "$rounds" "$threads" > "$out.tmp"
mv "$out.tmp" "$out"
cat "$out"
