// Probe (not part of the package): would a decode mode that is not f32-exact stream the 7B model
// faster? An int8 (AVX512-VNNI) M = 1 GEMV over the paired nibble order — NF4 codes -> int8 by
// vpshufb (T = round(127·code) + 128, as u8), x -> int8 per 64-element block (scale max|x|/127),
// vpdpbusd, a per-block f32 scale — against the package's f32-exact paired tile, one and two
// threads (OpenMP), from L2 (256 rows) and DRAM (131072 rows, 256 MiB, huge pages), wall time.
// PF=n: software prefetch n tiles ahead (0: none); ILV=1: a tile's 4 rows interleaved per 64 bytes.
// Plain absmax (no double quant) for brevity. After `swift build -c release`:
//   S=Sources/CQLoRAKernels
//   clang -O2 -fopenmp -mavx512f -mavx512bw -mavx512vnni -mavx512dq -mavx512vl -I$S -I$S/include \
//     Benchmarks/probe/gemv_q8.c $S/*.c -o /tmp/gemv_q8 -L/usr/lib/llvm-14/lib -lm
//   LD_LIBRARY_PATH=/usr/lib/llvm-14/lib /tmp/gemv_q8 256 2000; ... /tmp/gemv_q8 131072 4
#define _GNU_SOURCE
#include "kernels_internal.h"
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <sys/mman.h>
#include <time.h>
static int PF = 2, ILV = 0;
static double now(void){struct timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec+t.tv_nsec*1e-9;}
static const float nf4[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
  -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
  0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

// x quantized per 64: xq int8, dx scale, corr = 128 * sum(xq) * dx
static void quant_x(const float *x, int64_t K, int8_t *xq, float *dx, float *corr) {
  for (int64_t b = 0; b < K / 64; b++) { float m = 0; for (int i = 0; i < 64; i++) m = fmaxf(m, fabsf(x[64*b+i]));
    const float d = m / 127.0f, inv = d > 0 ? 1.0f / d : 0; int s = 0;
    for (int i = 0; i < 64; i++) { int q = (int)lrintf(x[64*b+i] * inv); xq[64*b+i] = (int8_t)q; s += q; }
    dx[b] = d; corr[b] = 128.0f * (float)s * d; }
}

// rows [n0, n0+4): paired order bytes p (row stride K/2), absmax per block (plain, for the probe)
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void q8_tile4(const uint8_t *p, int64_t K, const float *absmax,
    const int8_t *xq, const float *dx, const float *corr, const __m512i T, float *out) {
  const int64_t blocks = K / 64; const int64_t ldp = K / 2;
  __m512 acc[4]; float sc[4] = {0,0,0,0};
  for (int r = 0; r < 4; r++) acc[r] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  for (int64_t j = 0; j < blocks / 2; j++) {
    const __m512i xa = _mm512_loadu_si512(xq + 128*j), xb = _mm512_loadu_si512(xq + 128*j + 64);
    for (int r = 0; r < 4; r++) {
      const uint8_t *src = ILV ? p + 256*j + 64*r : p + r*ldp + 64*j;
      if (PF) _mm_prefetch((const char *)src + (ILV ? PF * 4 * ldp : (PF * 4) * ldp), _MM_HINT_T1);
      const __m512i v = _mm512_loadu_si512(src);
      const __m512i wl = _mm512_shuffle_epi8(T, _mm512_and_si512(v, m4));
      const __m512i wh = _mm512_shuffle_epi8(T, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
      const __m512i da = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wl, xa);
      const __m512i db = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wh, xb);
      const float sa = absmax[r*blocks + 2*j] * dx[2*j] * (1.0f/127.0f), sb = absmax[r*blocks + 2*j+1] * dx[2*j+1] * (1.0f/127.0f);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(da), _mm512_set1_ps(sa), acc[r]);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(db), _mm512_set1_ps(sb), acc[r]);
      sc[r] += absmax[r*blocks + 2*j] * corr[2*j] + absmax[r*blocks + 2*j+1] * corr[2*j+1];
    }
  }
  for (int r = 0; r < 4; r++) out[r] = _mm512_reduce_add_ps(acc[r]) - sc[r] / 127.0f;
}

int main(int argc, char **argv) {
  if (getenv("PF")) PF = atoi(getenv("PF"));
  if (getenv("ILV")) ILV = atoi(getenv("ILV"));
  const int64_t K = 4096, N = argc > 1 ? atoll(argv[1]) : 256; const int reps = argc > 2 ? atoi(argv[2]) : 100;
  const size_t bytes = (size_t)N*K/2, page = 2<<20;
  uint8_t *bnb = aligned_alloc(page, (bytes+64+page-1)/page*page), *pp = aligned_alloc(page, (bytes+64+page-1)/page*page);
  madvise(bnb, bytes, MADV_HUGEPAGE); madvise(pp, bytes, MADV_HUGEPAGE);
  srand(1); for (size_t i = 0; i < bytes; i++) bnb[i] = (uint8_t)rand(); memcpy(pp, bnb, bytes); memset(pp+bytes,0,64);
  cq_pair_nibbles(pp, N*K, 64, 1, 1);
  if (getenv("ILV") && atoi(getenv("ILV"))) { uint8_t *tmp = malloc(bytes); memcpy(tmp, pp, bytes);
    for (int64_t t = 0; t < N/4; t++) for (int64_t j = 0; j < K/128; j++) for (int r = 0; r < 4; r++)
      memcpy(pp + t*2*K + 256*j + 64*r, tmp + (4*t + r)*(K/2) + 64*j, 64); free(tmp); }
  float *absmax = malloc(N*K/64*4); for (int64_t i = 0; i < N*K/64; i++) absmax[i] = 0.01f + (rand()%100)*1e-4f;
  float *x = malloc(K*4); for (int64_t i = 0; i < K; i++) x[i] = (float)(rand()%2001-1000)/1000.0f;
  int8_t *xq = aligned_alloc(64, K); float dx[64], corr[64]; quant_x(x, K, xq, dx, corr);
  int8_t tb[64]; for (int i = 0; i < 64; i++) tb[i] = (int8_t)((int)lrintf(127.0f*nf4[i%16]) + 128);
  const __m512i T = _mm512_loadu_si512(tb);
  float *y8 = malloc(N*4), *y32 = malloc(N*4); double *yref = malloc(N*8);
  const cq_qweight w = {pp, N, K, 64, nf4, absmax, NULL, NULL, NULL, 0, 0, 1};
  float *xp = aligned_alloc(64, K*4); cq_permute_x_paired(x, 1, K, 64, xp);
  // reference (double)
  float *row = malloc(K*4);
  for (int64_t n = 0; n < N; n++) { cq_decode_range_portable(&w, n*K, K, row); double s = 0; for (int64_t k = 0; k < K; k++) s += (double)row[k]*x[k]; yref[n] = s; }
  for (int round = 0; round < 3; round++) {
    for (int th = 1; th <= 2; th++) {
      double t = now();
      for (int it = 0; it < reps; it++) {
        #pragma omp parallel for num_threads(th) schedule(static)
        for (int64_t n0 = 0; n0 < N; n0 += 4) q8_tile4(pp + n0*K/2, K, absmax + n0*K/64, xq, dx, corr, T, y8 + n0);
      }
      const double t8 = (now()-t)/reps;
      t = now();
      for (int it = 0; it < reps; it++) {
        #pragma omp parallel for num_threads(th) schedule(static)
        for (int64_t n0 = 0; n0 < N; n0 += 4) { float d[16]; const cq_tile_scales s = {absmax + n0*K/64, NULL, NULL, 0};
          cq_gemv_tile_avx512(&w, n0, 4, &s, xp, 1, K, d); for (int r = 0; r < 4; r++) y32[n0+r] = d[r*4]; }
      }
      const double t32 = (now()-t)/reps;
      double e8 = 0, e32 = 0, mx = 0;
      for (int64_t n = 0; n < N; n++) { e8 = fmax(e8, fabs(y8[n]-yref[n])); e32 = fmax(e32, fabs(y32[n]-yref[n])); mx = fmax(mx, fabs(yref[n])); }
      printf("threads %d: int8 %.2f GB/s, f32-exact paired %.2f GB/s (%.2fx); max err / max|y|: int8 %.2e, f32 %.2e\n", th,
             bytes/t8*1e-9, bytes/t32*1e-9, t32/t8, e8/mx, e32/mx);
    }
  }
}
