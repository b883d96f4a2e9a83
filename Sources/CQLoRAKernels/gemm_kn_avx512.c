// AVX-512 micro-kernels of the backward GEMM (gemm_kn.c): both operands packed k-major, so the
// weight side is a [kc][12] tile read 48 contiguous bytes per k (no transpose of W's rows).
// Same register tile as gemm_microkernel_avx512.c: 32 (2 zmm) x 12 = 24 accumulators, or 16 x 12
// for a half panel. Each lane is its own fma chain from zero, so full and half panels give the
// same bits for the same output.
#include "kernels_internal.h"
#if CQ_X86
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
enum { MR = CQ_MRP_AVX512, NR = CQ_NR_AVX512 };

AVX512 void cq_kn_kernel_avx512(const float *xp, int64_t ldx, const float *wp, int64_t ldw, int64_t kc, float *ct, int64_t ldc) {
    __m512 c0[NR], c1[NR];
    CQ_UNROLL for (int j = 0; j < NR; j++) c0[j] = c1[j] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        const __m512 a0 = _mm512_loadu_ps(xp + k * ldx), a1 = _mm512_loadu_ps(xp + k * ldx + 16);
        const float *b = wp + k * ldw;
        CQ_UNROLL for (int j = 0; j < NR; j++) {
            const __m512 bj = _mm512_set1_ps(b[j]);
            c0[j] = _mm512_fmadd_ps(a0, bj, c0[j]);
            c1[j] = _mm512_fmadd_ps(a1, bj, c1[j]);
        }
    }
    CQ_UNROLL for (int j = 0; j < NR; j++) {
        float *c = ct + j * ldc;
        _mm512_storeu_ps(c, _mm512_add_ps(_mm512_loadu_ps(c), c0[j]));
        _mm512_storeu_ps(c + 16, _mm512_add_ps(_mm512_loadu_ps(c + 16), c1[j]));
    }
}

AVX512 void cq_kn_kernel_half_avx512(const float *xp, int64_t ldx, const float *wp, int64_t ldw, int64_t kc, float *ct, int64_t ldc) {
    __m512 c[NR];
    CQ_UNROLL for (int j = 0; j < NR; j++) c[j] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        const __m512 a = _mm512_loadu_ps(xp + k * ldx);
        const float *b = wp + k * ldw;
        CQ_UNROLL for (int j = 0; j < NR; j++) c[j] = _mm512_fmadd_ps(a, _mm512_set1_ps(b[j]), c[j]);
    }
    CQ_UNROLL for (int j = 0; j < NR; j++) {
        float *d = ct + j * ldc;
        _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), c[j]));
    }
}
#endif
