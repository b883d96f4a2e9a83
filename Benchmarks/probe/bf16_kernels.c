// Probe: how fast bf16 compute is on this CPU, in thread CPU time (robust to a loaded machine).
// (1) the instruction peaks: vdpbf16ps vs vfmadd231ps on zmm, 24 independent accumulators;
// (2) the kernels a SmolLM2-135M training step runs, one thread, M = 256: forward fused 4-bit
//     linear, dX through the 4-bit weight, and the lm_head-style f32 x·Wᵀ, f32 vs bf16.
// Not part of the package build; after `swift build -c release`:
//   B=.build/release/CQLoRAKernels.build
//   clang -O2 -ISources/CQLoRAKernels/include Benchmarks/probe/bf16_kernels.c $B/*.o -lomp5 -lm -o /tmp/bf16_kernels
//   /tmp/bf16_kernels
#include "cqlora.h"
#include "cqlora_bf16.h"
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define ACC 24
__attribute__((target("avx512f,avx512bf16,avx512vl,avx512bw"))) static float peak_bf16(long r) {
    __m512 c[ACC];
    for (int j = 0; j < ACC; j++) c[j] = _mm512_set1_ps((float)j);
    __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = a;
    for (long i = 0; i < r; i++) {
        _Pragma("clang loop unroll(full)") for (int j = 0; j < ACC; j++) c[j] = _mm512_dpbf16_ps(c[j], a, b);
        __asm__ volatile("" : "+v"(a));
    }
    for (int j = 1; j < ACC; j++) c[0] = _mm512_add_ps(c[0], c[j]);
    return _mm512_reduce_add_ps(c[0]);
}
__attribute__((target("avx512f"))) static float peak_f32(long r) {
    __m512 c[ACC];
    for (int j = 0; j < ACC; j++) c[j] = _mm512_set1_ps((float)j);
    __m512 a = _mm512_set1_ps(1.0001f), b = _mm512_set1_ps(0.9999f);
    for (long i = 0; i < r; i++) {
        _Pragma("clang loop unroll(full)") for (int j = 0; j < ACC; j++) c[j] = _mm512_fmadd_ps(a, b, c[j]);
        __asm__ volatile("" : "+v"(a));
    }
    for (int j = 1; j < ACC; j++) c[0] = _mm512_add_ps(c[0], c[j]);
    return _mm512_reduce_add_ps(c[0]);
}

static float rnd(void) { return (float)rand() / (float)RAND_MAX - 0.5f; }

static void kernels(int N, int K) {
    const int M = 256, runs = 5;
    float *w = malloc(4L * N * K), *x = malloc(4L * M * K), *y = malloc(4L * M * N), *dy = malloc(4L * M * N), *dx = malloc(4L * M * K);
    for (long i = 0; i < (long)N * K; i++) w[i] = rnd();
    for (long i = 0; i < (long)M * K; i++) x[i] = rnd();
    for (long i = 0; i < (long)M * N; i++) dy[i] = rnd();
    const long n = (long)N * K;
    uint8_t *packed = malloc((n + 1) / 2);
    float *absmax = malloc(4 * (n / 64 + 1));
    int64_t bad;
    cq_quantize_4bit(w, n, 64, CQ_NF4, packed, absmax, &bad, 1);
    cq_qweight q = {packed, N, K, 64, cq_codebook(CQ_NF4), absmax, NULL, NULL, NULL, 0, 0};
    void *s1, *s2;
    if (posix_memalign(&s1, 64, cq_fused_linear_scratch_bytes(M, N, K, 0, 1) + 64) ||
        posix_memalign(&s2, 64, cq_matmul_nt_scratch_bytes(M, K, 1) + 64)) abort();
    const double gf = 2.0 * M * N * K * runs / 1e9;
    double t[7];
    t[0] = now();
    for (int i = 0; i < runs; i++) cq_fused_linear_ex(x, M, &q, NULL, NULL, 0, 0, NULL, y, s1, 1, 0);
    t[1] = now();
    for (int i = 0; i < runs; i++) cq_fused_linear_ex(x, M, &q, NULL, NULL, 0, 0, NULL, y, s1, 1, 1);
    t[2] = now();
    for (int i = 0; i < runs; i++) cq_matmul_nn_q4(dy, M, &q, dx, 1);
    t[3] = now();
    for (int i = 0; i < runs; i++) cq_matmul_nn_q4_bf16(dy, M, &q, dx, 1);
    t[4] = now();
    for (int i = 0; i < runs; i++) cq_matmul_nt(x, M, w, N, K, y, s2, 1);
    t[5] = now();
    for (int i = 0; i < runs; i++) cq_matmul_nt_bf16(x, M, w, N, K, y, s2, 1);
    t[6] = now();
    printf("N=%-5d K=%-5d GFLOP/s  fused fwd f32 %5.1f bf16 %5.1f | dX 4-bit f32 %5.1f bf16 %5.1f | x·Wᵀ f32 %5.1f bf16 %5.1f\n", N, K,
           gf / (t[1] - t[0]), gf / (t[2] - t[1]), gf / (t[3] - t[2]), gf / (t[4] - t[3]), gf / (t[5] - t[4]), gf / (t[6] - t[5]));
    free(s1); free(s2); free(packed); free(absmax); free(w); free(x); free(y); free(dy); free(dx);
}

/// The lm_head's dX = dlogits·E (E f32 [vocab, hidden]), f32 vs bf16, one run each.
static void lm_head_dx(int V, int D) {
    const int M = 256;
    float *e = malloc(4L * V * D), *dy = malloc(4L * M * V), *dx = malloc(4L * M * D);
    for (long i = 0; i < (long)V * D; i++) e[i] = rnd();
    for (long i = 0; i < (long)M * V; i++) dy[i] = rnd();
    const double gf = 2.0 * M * V * D / 1e9;
    double t0 = now();
    cq_matmul_nn(dy, M, e, V, D, dx, 1);
    double t1 = now();
    cq_matmul_nn_bf16(dy, M, e, V, D, dx, 1);
    double t2 = now();
    printf("lm_head dX V=%d D=%d GFLOP/s  f32 %5.1f bf16 %5.1f\n", V, D, gf / (t1 - t0), gf / (t2 - t1));
    free(e); free(dy); free(dx);
}

int main(void) {
    if (!cq_bf16_available()) { printf("no AVX512-BF16 here\n"); return 0; }
    const long r = 20000000;
    double t0 = now();
    float a = peak_f32(r);
    double t1 = now();
    float b = peak_bf16(r);
    double t2 = now();
    printf("peak, one core: vfmadd231ps zmm %.0f GFLOP/s, vdpbf16ps zmm %.0f GFLOP/s (%g %g)\n",
           r * ACC * 32.0 / (t1 - t0) / 1e9, r * ACC * 64.0 / (t2 - t1) / 1e9, a, b);
    kernels(1536, 576);  // gate/up
    kernels(576, 1536);  // down
    kernels(576, 576);   // q/o
    lm_head_dx(49152, 576);
    return 0;
}
