// AVX2 micro-kernel of the backward GEMM (gemm_kn.c): 16 lanes (2 ymm) x 6 = 12 accumulators,
// both operands packed k-major (the weight side a [kc][6] tile).
#include "kernels_internal.h"
#if CQ_X86
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))
enum { MR = CQ_MRP_AVX2, NR = CQ_NR_AVX2 };

AVX2 void cq_kn_kernel_avx2(const float *xp, int64_t ldx, const float *wp, int64_t ldw, int64_t kc, float *ct, int64_t ldc) {
    __m256 c0[NR], c1[NR];
    CQ_UNROLL for (int j = 0; j < NR; j++) c0[j] = c1[j] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        const __m256 a0 = _mm256_loadu_ps(xp + k * ldx), a1 = _mm256_loadu_ps(xp + k * ldx + 8);
        const float *b = wp + k * ldw;
        CQ_UNROLL for (int j = 0; j < NR; j++) {
            const __m256 bj = _mm256_broadcast_ss(b + j);
            c0[j] = _mm256_fmadd_ps(a0, bj, c0[j]);
            c1[j] = _mm256_fmadd_ps(a1, bj, c1[j]);
        }
    }
    CQ_UNROLL for (int j = 0; j < NR; j++) {
        float *c = ct + j * ldc;
        _mm256_storeu_ps(c, _mm256_add_ps(_mm256_loadu_ps(c), c0[j]));
        _mm256_storeu_ps(c + 8, _mm256_add_ps(_mm256_loadu_ps(c + 8), c1[j]));
    }
}
#endif
