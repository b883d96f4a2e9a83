#!/usr/bin/env bash
# One QLoRA training step (forward + backward + AdamW, 4096->11008 NF4, r=16, M=128) timed for
# qlora-bench and for bitsandbytes 0.50.2 + PEFT in the same run, then their ratio. Not run by CI.
#   Benchmarks/peer/run_train_step.sh [threads=2] [runs=5]     (PEER_VENV: a venv with torch, bitsandbytes, peft)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
threads="${1:-2}"
runs="${2:-5}"
venv="${PEER_VENV:-$here/.venv}"
[ -x "$venv/bin/python" ] || { echo "no venv at $venv: run Benchmarks/peer/run_peer.sh once, or set PEER_VENV" >&2; exit 1; }
ours="$("$here/../../.build/release/qlora-bench" --train-step --threads "$threads" --runs "$runs")"
peer="$("$venv/bin/python" "$here/train_step_peer.py" --threads "$threads" --runs "$runs")"
echo "$ours"
echo "$peer"
a="$(sed -E 's/.*: ([0-9.]+) ms.*/\1/' <<<"$ours")"
b="$(sed -E 's/.*: ([0-9.]+) ms.*/\1/' <<<"$peer")"
python3 -c "print(f'time ratio qlora / bnb+peft: {$a / $b:.2f}x')"
