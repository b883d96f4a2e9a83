// AVX2 micro-kernel: 16 x rows (2 ymm) x 6 weight rows = 12 accumulators (layout as in
// gemm_microkernel_avx512.c).
#include "kernels_internal.h"
#if CQ_X86
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))
enum { MR = CQ_MRP_AVX2, NR = CQ_NR_AVX2 };

AVX2 void cq_gemm_kernel_avx2(const void *xv, const void *wv, int64_t ldw, int64_t kc, float *ct, int64_t ldc) {
    const float *xp = (const float *)xv, *wp = (const float *)wv;
    __m256 c0[NR], c1[NR];
    CQ_UNROLL for (int j = 0; j < NR; j++) c0[j] = c1[j] = _mm256_setzero_ps();
    const float *w0 = wp, *w3 = wp + 3 * ldw;
    for (int64_t k = 0; k < kc; k++) {
        const __m256 a0 = _mm256_loadu_ps(xp + k * MR), a1 = _mm256_loadu_ps(xp + k * MR + 8);
        const float *rows[NR] = {w0 + k, w0 + ldw + k, w0 + 2 * ldw + k, w3 + k, w3 + ldw + k, w3 + 2 * ldw + k};
        CQ_UNROLL for (int j = 0; j < NR; j++) {
            const __m256 b = _mm256_broadcast_ss(rows[j]);
            c0[j] = _mm256_fmadd_ps(a0, b, c0[j]);
            c1[j] = _mm256_fmadd_ps(a1, b, c1[j]);
        }
    }
    CQ_UNROLL for (int j = 0; j < NR; j++) {
        float *c = ct + j * ldc;
        _mm256_storeu_ps(c, _mm256_add_ps(_mm256_loadu_ps(c), c0[j]));
        _mm256_storeu_ps(c + 8, _mm256_add_ps(_mm256_loadu_ps(c + 8), c1[j]));
    }
}
#endif
