#!/usr/bin/env bash
# A/B comparison of qlora-bench binaries on a shared, noisy machine: runs `qlora-bench --quick`
# for each binary in turn, round after round (interleaved, so a busy period hits every variant),
# then prints each case's median time per variant as a ratio to the first binary.
#   Benchmarks/ab/run_ab.sh ROUNDS NAME=BINARY NAME=BINARY ...   (results in $AB_OUT, default /tmp/qlora-ab)
set -euo pipefail
rounds="$1"; shift
out="${AB_OUT:-/tmp/qlora-ab}"
rm -rf "$out"; mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
  for spec in "$@"; do
    name="${spec%%=*}"; bin="${spec#*=}"
    "$bin" --quick --output "$out/$name-r$r.md" >/dev/null 2>&1
  done
done
python3 "$(dirname "$0")/compare.py" "$out" $(for spec in "$@"; do echo "${spec%%=*}"; done)
