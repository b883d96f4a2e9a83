#!/usr/bin/env bash
# Builds and runs Benchmarks/probe/decode_dram.c: gemv_avx512.c compiled once per prefetch variant.
# Usage: Benchmarks/probe/decode_dram.sh [layers=8] [rounds=5] [threads=2]
set -euo pipefail
cd "$(dirname "$0")/../.."
S=Sources/CQLoRAKernels
out=/tmp/decode_dram
mkdir -p $out
cc="clang -O2 -I$S -I$S/include"
variant() { # name, extra flags
  $cc -c $S/gemv_avx512.c -Dcq_gemv_tile_avx512=$1 "${@:2}" -o $out/$1.o
}
variant v_default
variant v_none '-DCQ_GEMV_PREFETCH(a)=((void)0)'
variant v_t0 '-DCQ_GEMV_PREFETCH(a)=_mm_prefetch((const char *)(a), _MM_HINT_T0)'
variant v_t1_8k -DCQ_GEMV_PREFETCH_BYTES=8192
variant v_t1_32k -DCQ_GEMV_PREFETCH_BYTES=32768
variant v_nta '-DCQ_GEMV_PREFETCH(a)=_mm_prefetch((const char *)(a), _MM_HINT_NTA)'
variant v_t2 '-DCQ_GEMV_PREFETCH(a)=_mm_prefetch((const char *)(a), _MM_HINT_T2)'
variant v_t1_64k -DCQ_GEMV_PREFETCH_BYTES=65536
# the pair tile prefetches once per 64 bytes of each row; this one every other (one 128-byte pair of lines, adjacent-line prefetch)
variant v_half '-DCQ_GEMV_PREFETCH(a)=do { if (!((uintptr_t)(a) & 64)) _mm_prefetch((const char *)(a), _MM_HINT_T1); } while (0)'
$cc Benchmarks/probe/decode_dram.c $out/v_*.o $(ls $S/*.c | grep -v '/gemv_avx512.c') $S/gemv_avx512.c -o $out/probe -lm -lpthread -L/usr/lib/llvm-14/lib -lomp
LD_LIBRARY_PATH=/usr/lib/llvm-14/lib $out/probe "${1:-8}" "${2:-5}" "${3:-2}"
