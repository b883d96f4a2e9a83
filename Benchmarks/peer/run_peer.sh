#!/usr/bin/env bash
# Times bitsandbytes 0.50.2 + PEFT 0.21.2 (CPU torch) on the qlora-bench shapes. Not run by CI.
#   Benchmarks/peer/run_peer.sh [--quick]      -> Benchmarks/results/peer.md
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${PEER_VENV:-$here/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  # CPU torch: a local wheel (PIP_FIND_LINKS) when there is one, else PyTorch's CPU index.
  "$venv/bin/pip" install --quiet "torch==2.13.0+cpu" 2>/dev/null \
    || "$venv/bin/pip" install --quiet --index-url https://download.pytorch.org/whl/cpu torch
  "$venv/bin/pip" install --quiet bitsandbytes==0.50.2 peft==0.21.2
fi
"$venv/bin/python" "$here/peer.py" --output "$here/../results/peer.md" "$@"
