#!/usr/bin/env bash
# Instruction counts of one M=1 fused QLoRA linear call (4096×11008 NF4+DQ) under callgrind.
# Not run by CI. perf's hardware counters are not available on the VMs this project runs on, so
# callgrind (which counts instructions, repeatably) is the profiler. Note: valgrind's CPUID hides
# AVX-512, so the kernels' run-time dispatch takes the AVX2 path under it.
#   Benchmarks/profile/run_callgrind.sh   -> callgrind_annotate summary on stdout
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/../../Sources/CQLoRAKernels"
out="$(mktemp -d)"
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
# DWARF 4: valgrind 3.19 cannot read clang 21's default DWARF 5.
clang -O2 -gdwarf-4 -I"$src/include" -I"$src" "$src"/*.c "$here/time_fused.c" -o "$out/time_fused" \
  -Wl,/usr/lib/x86_64-linux-gnu/libomp.so.5 -lm
valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" "$out/time_fused" 1 1 1 1 >/dev/null 2>&1
callgrind_annotate --auto=no --inclusive=yes --threshold=99 "$out/callgrind.out" | grep -E "gemv|fused|PROGRAM TOTALS"
echo "weights per call: $((4096 * 11008)); raw profile: $out/callgrind.out"
