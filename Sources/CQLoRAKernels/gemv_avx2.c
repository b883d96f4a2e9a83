// AVX2 small-M kernel (same layout as gemv_avx512.c, 8 lanes): rows are taken in pairs so that
// accumulators and both codebook halves per row fit in 16 ymm registers.
#include "kernels_internal.h"
#if CQ_X86
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline __attribute__((always_inline)) __m256 lookup16(__m256i idx, __m256 lo, __m256 hi) {
    const __m256 sel = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)); // bit 3 -> sign bit
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, idx), _mm256_permutevar8x32_ps(hi, idx), sel);
}

AVX2 static inline __attribute__((always_inline)) float hsum(__m256 s) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

AVX2 static inline __attribute__((always_inline)) void
pair(const cq_qweight *w, int64_t n0, int r0, const int R, const cq_tile_scales *scales, const float *xperm,
     const int MT, int64_t K, float *out) {
    __m256 acc[2][4], lo[2], hi[2];
    const uint8_t *p[2];
    cq_row_scales rs[2];
    const int64_t blocks = K / w->block_size;
    cq_tile_rows_at(w, n0, r0, R, scales, K, p, rs);
    for (int r = 0; r < R; r++)
        for (int m = 0; m < MT; m++) acc[r][m] = _mm256_setzero_ps();
    const __m256 cblo = _mm256_loadu_ps(w->codebook), cbhi = _mm256_loadu_ps(w->codebook + 8);
    const int64_t per_block = w->block_size / CQ_GEMV_GROUP;
    const float *xg = xperm;
    for (int64_t b = 0; b < blocks; b++) {
        for (int r = 0; r < R; r++) {
            const __m256 a = _mm256_set1_ps(scales->plain ? cq_row_scale_next(&rs[r], b, 0) : cq_row_scale_next(&rs[r], b, 1));
            lo[r] = _mm256_mul_ps(cblo, a);
            hi[r] = _mm256_mul_ps(cbhi, a);
        }
        for (int64_t g = 0; g < per_block; g++, xg += CQ_GEMV_GROUP) {
            for (int r = 0; r < R; r++) {
                const __m128i bytes = _mm_loadu_si128((const __m128i *)p[r]);
                const __m256i ia = _mm256_cvtepu8_epi32(bytes), ib = _mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8));
                const __m256 eva = lookup16(_mm256_srli_epi32(ia, 4), lo[r], hi[r]);
                const __m256 evb = lookup16(_mm256_srli_epi32(ib, 4), lo[r], hi[r]);
                const __m256 oda = lookup16(ia, lo[r], hi[r]), odb = lookup16(ib, lo[r], hi[r]);
                for (int m = 0; m < MT; m++) {
                    const float *xm = xg + m * K;
                    acc[r][m] = _mm256_fmadd_ps(eva, _mm256_loadu_ps(xm), acc[r][m]);
                    acc[r][m] = _mm256_fmadd_ps(evb, _mm256_loadu_ps(xm + 8), acc[r][m]);
                    acc[r][m] = _mm256_fmadd_ps(oda, _mm256_loadu_ps(xm + 16), acc[r][m]);
                    acc[r][m] = _mm256_fmadd_ps(odb, _mm256_loadu_ps(xm + 24), acc[r][m]);
                }
                p[r] += CQ_GEMV_GROUP / 2;
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int m = 0; m < MT; m++) out[r * 4 + m] = hsum(acc[r][m]);
}

/// The paired order (cqlora.h, gemv_avx512.c's pair_tile): per 32 bytes, loads at byte offsets
/// o = 0..3 give block 2j's codes in each dword's low 4 bits and, shifted by 4, block 2j+1's.
/// x is permuted by cq_permute_x_paired (8 lanes = half of the AVX-512 layout's 16). Reads up to
/// 3 bytes past the weight's end (QuantizedWeightStorage pads).
AVX2 static inline __attribute__((always_inline)) void
pair_rows(const cq_qweight *w, int64_t n0, int r0, const int R, const cq_tile_scales *scales, const float *xperm,
          const int MT, int64_t K, float *out) {
    __m256 acc[2][4], lo[2][2], hi[2][2];
    const uint8_t *p[2];
    cq_row_scales rs[2];
    const int64_t blocks = K / w->block_size;
    cq_tile_rows_at(w, n0, r0, R, scales, K, p, rs);
    for (int r = 0; r < R; r++)
        for (int m = 0; m < MT; m++) acc[r][m] = _mm256_setzero_ps();
    const __m256 cblo = _mm256_loadu_ps(w->codebook), cbhi = _mm256_loadu_ps(w->codebook + 8);
    const int64_t subs = w->block_size / 64;
    const float *xg = xperm;
    for (int64_t b = 0; b < blocks; b += 2) {
        for (int r = 0; r < R; r++)
            for (int h = 0; h < 2; h++) {
                const __m256 a = _mm256_set1_ps(scales->plain ? cq_row_scale_next(&rs[r], b + h, 0)
                                                              : cq_row_scale_next(&rs[r], b + h, 1));
                lo[r][h] = _mm256_mul_ps(cblo, a);
                hi[r][h] = _mm256_mul_ps(cbhi, a);
            }
        for (int64_t c = 0; c < subs; c++, xg += 128) {
            for (int o = 0; o < 4; o++)
                for (int q = 0; q < 2; q++)
                    for (int r = 0; r < R; r++) {
                        const __m256i v = _mm256_loadu_si256((const __m256i *)(p[r] + 32 * q + o));
                        const __m256 ev = lookup16(v, lo[r][0], hi[r][0]);
                        const __m256 od = lookup16(_mm256_srli_epi32(v, 4), lo[r][1], hi[r][1]);
                        for (int m = 0; m < MT; m++) {
                            const float *xm = xg + m * K + 32 * o + 8 * q;
                            acc[r][m] = _mm256_fmadd_ps(ev, _mm256_loadu_ps(xm), acc[r][m]);
                            acc[r][m] = _mm256_fmadd_ps(od, _mm256_loadu_ps(xm + 16), acc[r][m]);
                        }
                    }
            for (int r = 0; r < R; r++) p[r] += 64;
        }
    }
    for (int r = 0; r < R; r++)
        for (int m = 0; m < MT; m++) out[r * 4 + m] = hsum(acc[r][m]);
}

#define CASE(R, MT) case (R) * 8 + (MT): \
    if (w->paired) pair_rows(w, n0, r0, R, scales, xperm, MT, K, o); else pair(w, n0, r0, R, scales, xperm, MT, K, o); break;
AVX2 void cq_gemv_tile_avx2(const cq_qweight *w, int64_t n0, int nrows, const cq_tile_scales *scales, const float *xperm, int mt,
                            int64_t K, float *out) {
    for (int r0 = 0; r0 < nrows; r0 += 2) {
        float *o = out + r0 * 4;
        switch ((nrows - r0 >= 2 ? 2 : 1) * 8 + mt) {
            CASE(1, 1) CASE(1, 2) CASE(1, 3) CASE(1, 4)
            CASE(2, 1) CASE(2, 2) CASE(2, 3) CASE(2, 4)
            default: break;
        }
    }
}
#endif
