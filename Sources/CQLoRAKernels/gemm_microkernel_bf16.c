// AVX512-BF16 micro-kernel for the optional bf16-compute panel path (panel_gemm.c): the same
// 32 x 12 tile as gemm_microkernel_avx512.c, but each vdpbf16ps multiplies pairs of consecutive
// k (x and weight rounded to bf16, products summed in f32), twice the MACs per instruction.
#include "kernels_internal.h"
#if CQ_X86
#include <immintrin.h>

#define BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
enum { MR = CQ_MRP_AVX512, NR = CQ_NR_AVX512 };

/// xp: per k pair, 32 lanes of (x[m, 2kk] | x[m, 2kk+1] << 16) bf16 pairs. wp: rows of bf16
/// weights (ldw elements apart, kp pairs used). ct as in the f32 kernels.
BF16 void cq_gemm_kernel_bf16(const void *xv, const void *wv, int64_t ldw, int64_t kp, float *ct, int64_t ldc) {
    const uint32_t *xp = (const uint32_t *)xv;
    const uint16_t *wp = (const uint16_t *)wv;
    __m512 c0[NR], c1[NR];
    CQ_UNROLL for (int j = 0; j < NR; j++) c0[j] = c1[j] = _mm512_setzero_ps();
    const uint32_t *rows[NR];
    CQ_UNROLL for (int j = 0; j < NR; j++) rows[j] = (const uint32_t *)(wp + j * ldw);
    for (int64_t k = 0; k < kp; k++) {
        const __m512bh a0 = (__m512bh)_mm512_loadu_si512((const void *)(xp + k * MR));
        const __m512bh a1 = (__m512bh)_mm512_loadu_si512((const void *)(xp + k * MR + 16));
        CQ_UNROLL for (int j = 0; j < NR; j++) {
            const __m512bh b = (__m512bh)_mm512_set1_epi32((int)rows[j][k]);
            c0[j] = _mm512_dpbf16_ps(c0[j], a0, b);
            c1[j] = _mm512_dpbf16_ps(c1[j], a1, b);
        }
    }
    CQ_UNROLL for (int j = 0; j < NR; j++) {
        float *c = ct + j * ldc;
        _mm512_storeu_ps(c, _mm512_add_ps(_mm512_loadu_ps(c), c0[j]));
        _mm512_storeu_ps(c + 16, _mm512_add_ps(_mm512_loadu_ps(c + 16), c1[j]));
    }
}

BF16 void cq_to_bf16(const float *in, int64_t n, uint16_t *out) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(out + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(in + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        const __m256i v = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, in + i));
        _mm256_mask_storeu_epi16(out + i, m, v);
    }
    if (n & 1) out[n] = 0;
}
#endif
