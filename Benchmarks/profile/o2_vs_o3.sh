#!/usr/bin/env bash
# SwiftPM builds C at -O2 and a versioned package may not pass -O3 (unsafeFlags). This builds the
# kernels three ways — a git revision REV as it was (default: the last commit with -fopenmp -O3),
# the current sources at -O2 (what SwiftPM does) and at -O3 — and times one fused 4096x11008
# NF4+DQ linear with each, interleaved, best of several rounds (ms per call).
#   Benchmarks/profile/o2_vs_o3.sh [REV]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"; root="$here/../.."
rev="${1:-7233996}"
out="$(mktemp -d)"
git -C "$root" archive "$rev" Sources/CQLoRAKernels | tar -x -C "$out"
old="$out/Sources/CQLoRAKernels"; cur="$root/Sources/CQLoRAKernels"
clang -O3 -Xclang -fopenmp -I"$old/include" -I"$old" -I/usr/include/x86_64-linux-gnu/openblas-pthread "$old"/*.c \
  "$here/time_fused.c" -o "$out/old" -l:libomp.so.5 -lopenblas -lm 2>/dev/null
clang -O2 -I"$cur/include" -I"$cur" "$cur"/*.c "$here/time_fused.c" -o "$out/O2" -l:libomp.so.5 -lm 2>/dev/null
clang -O3 -I"$cur/include" -I"$cur" "$cur"/*.c "$here/time_fused.c" -o "$out/O3" -l:libomp.so.5 -lm 2>/dev/null
echo "| M | threads | $rev (-O3 -fopenmp) | now, -O2 (SwiftPM) | now, -O3 |"
echo "|---:|---:|---:|---:|---:|"
for c in "1 1 100 9" "1 2 100 9" "16 1 10 7" "16 2 10 7" "128 1 2 5" "128 2 2 5"; do
  set -- $c
  b_old=1e9; b_o2=1e9; b_o3=1e9
  for round in 1 2 3; do
    b_old=$(python3 -c "print(min($b_old, $("$out/old" $c)))")
    b_o2=$(python3 -c "print(min($b_o2, $("$out/O2" $c)))")
    b_o3=$(python3 -c "print(min($b_o3, $("$out/O3" $c)))")
  done
  echo "| $1 | $2 | $b_old | $b_o2 | $b_o3 |"
done
