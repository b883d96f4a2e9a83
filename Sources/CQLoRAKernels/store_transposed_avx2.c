// AVX2 transposed store of a GEMM accumulator tile (as store_transposed_avx512.c, in 8 x 8 blocks):
// y[m * ldy + j] = ct[j * ldc + m] (+ bias[j]); the same additions as the scalar loop, same bits.
#include "kernels_internal.h"
#if CQ_X86
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

/// r[0..8) (rows j of 8 m values) -> r[0..8) (rows m of 8 j values).
AVX2 static inline void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    CQ_UNROLL for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);     // per 128-bit lane: columns 0, 1
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]); // columns 2, 3
    }
    CQ_UNROLL for (int i = 0; i < 8; i += 4) { // u[i + c]: column c (lane 0) and 4 + c (lane 1) of rows i..i+3
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    CQ_UNROLL for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

/// Lanes [0, n) of a mask vector.
AVX2 static inline __m256i lanes(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

AVX2 void cq_store_transposed_avx2(const float *ct, int64_t ldc, const float *bias, int64_t nj, int64_t nm, float *y,
                                   int64_t ldy) {
    for (int64_t j0 = 0; j0 < nj; j0 += 8) {
        const int64_t jn = nj - j0 < 8 ? nj - j0 : 8;
        const __m256i jmask = lanes(jn);
        const __m256 b = bias ? _mm256_maskload_ps(bias + j0, jmask) : _mm256_setzero_ps();
        for (int64_t m0 = 0; m0 < nm; m0 += 8) {
            const int64_t mn = nm - m0 < 8 ? nm - m0 : 8;
            __m256 r[8];
            // Nothing past row nj or column nm is read (zeros instead) or stored.
            if (mn == 8) {
                CQ_UNROLL for (int i = 0; i < 8; i++) r[i] = i < jn ? _mm256_loadu_ps(ct + (j0 + i) * ldc + m0) : _mm256_setzero_ps();
            } else {
                const __m256i mmask = lanes(mn);
                CQ_UNROLL for (int i = 0; i < 8; i++)
                    r[i] = i < jn ? _mm256_maskload_ps(ct + (j0 + i) * ldc + m0, mmask) : _mm256_setzero_ps();
            }
            transpose8(r);
            float *d = y + m0 * ldy + j0;
            if (bias) {
                CQ_UNROLL for (int i = 0; i < 8; i++) r[i] = _mm256_add_ps(r[i], b);
            }
            if (jn == 8 && mn == 8) {
                CQ_UNROLL for (int i = 0; i < 8; i++) _mm256_storeu_ps(d + i * ldy, r[i]);
            } else {
                for (int i = 0; i < mn; i++) _mm256_maskstore_ps(d + i * ldy, jmask, r[i]);
            }
        }
    }
}
#endif
