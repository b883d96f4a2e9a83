// AVX-512 register-blocked micro-kernel: a 32 (x rows, 2 zmm) x 12 (weight rows, broadcast)
// tile of 24 accumulators. The weight panel stays row-major as decoded (no transpose pass);
// the tile is accumulated transposed (ct[j][i]) and written out once per panel by the driver.
#include "kernels_internal.h"
#if CQ_X86
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
enum { MR = CQ_MRP_AVX512, NR = CQ_NR_AVX512 };

AVX512 void cq_gemm_kernel_avx512(const void *xv, const void *wv, int64_t ldw, int64_t kc, float *ct, int64_t ldc) {
    const float *xp = (const float *)xv, *wp = (const float *)wv;
    __m512 c0[NR], c1[NR];
    CQ_UNROLL for (int j = 0; j < NR; j++) c0[j] = c1[j] = _mm512_setzero_ps();
    const float *w0 = wp, *w3 = wp + 3 * ldw, *w6 = wp + 6 * ldw, *w9 = wp + 9 * ldw;
    for (int64_t k = 0; k < kc; k++) {
        const __m512 a0 = _mm512_loadu_ps(xp + k * MR), a1 = _mm512_loadu_ps(xp + k * MR + 16);
        const float *rows[NR] = {w0 + k, w0 + ldw + k, w0 + 2 * ldw + k, w3 + k, w3 + ldw + k, w3 + 2 * ldw + k,
                                 w6 + k, w6 + ldw + k, w6 + 2 * ldw + k, w9 + k, w9 + ldw + k, w9 + 2 * ldw + k};
        CQ_UNROLL for (int j = 0; j < NR; j++) {
            const __m512 b = _mm512_set1_ps(*rows[j]);
            c0[j] = _mm512_fmadd_ps(a0, b, c0[j]);
            c1[j] = _mm512_fmadd_ps(a1, b, c1[j]);
        }
    }
    CQ_UNROLL for (int j = 0; j < NR; j++) {
        float *c = ct + j * ldc;
        _mm512_storeu_ps(c, _mm512_add_ps(_mm512_loadu_ps(c), c0[j]));
        _mm512_storeu_ps(c + 16, _mm512_add_ps(_mm512_loadu_ps(c + 16), c1[j]));
    }
}

/// The same for a 16-row x panel (M % 32 in 1..16): one zmm per weight row, 12 accumulators.
AVX512 void cq_gemm_kernel_half_avx512(const void *xv, const void *wv, int64_t ldw, int64_t kc, float *ct,
                                       int64_t ldc) {
    const float *xp = (const float *)xv, *wp = (const float *)wv;
    __m512 c[NR];
    CQ_UNROLL for (int j = 0; j < NR; j++) c[j] = _mm512_setzero_ps();
    const float *w0 = wp, *w3 = wp + 3 * ldw, *w6 = wp + 6 * ldw, *w9 = wp + 9 * ldw;
    for (int64_t k = 0; k < kc; k++) {
        const __m512 a = _mm512_loadu_ps(xp + k * (MR / 2));
        const float *rows[NR] = {w0 + k, w0 + ldw + k, w0 + 2 * ldw + k, w3 + k, w3 + ldw + k, w3 + 2 * ldw + k,
                                 w6 + k, w6 + ldw + k, w6 + 2 * ldw + k, w9 + k, w9 + ldw + k, w9 + 2 * ldw + k};
        CQ_UNROLL for (int j = 0; j < NR; j++) c[j] = _mm512_fmadd_ps(a, _mm512_set1_ps(*rows[j]), c[j]);
    }
    CQ_UNROLL for (int j = 0; j < NR; j++) {
        float *d = ct + j * ldc;
        _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), c[j]));
    }
}
#endif
