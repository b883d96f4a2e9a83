// bf16-compute variant of the small-M tiles (gemv.c, gemv_avx512.c), for cq_fused_linear_ex with
// bf16 != 0 on AVX512-BF16. Same driver, tiles (<= 4 weight rows x <= 4 x rows) and block scales
// as the f32 path, but:
//  - x is rounded to bf16 once per call (RNE, like cq_to_bf16) and permuted per 64-element group
//    into its 32 even-position values, then its 32 odd ones;
//  - per block, the 16-entry table codebook·absmax (f32, exactly as the f32 path) is rounded to
//    bf16 and duplicated into a 32-word table, so vpermw (which reads the low 5 bits of each word
//    index) can take the zero-extended packed bytes directly for the low nibbles;
//  - 32 packed bytes -> 32 words (vpmovzxbw) -> odd weights = vpermw(words), even weights =
//    vpermw(words >> 4): 64 weights per 2 lookups, multiplied with vdpbf16ps (pairs of bf16
//    products accumulated in f32).
// The decoded bf16 weights are exactly bf16(W'[n,k]), the values the bf16 panel path multiplies.
// Requires K % block_size == 0 and block_size % 64 == 0 (see cq_gemv_bf16_supported).
#include "kernels_internal.h"

#define G CQ_GEMV_BF16_GROUP

int cq_gemv_bf16_supported(const cq_qweight *w) {
    return w->cols > 0 && w->block_size >= G && w->block_size % G == 0 && w->cols % w->block_size == 0;
}

#if CQ_X86
#include <immintrin.h>

#define BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

/// xb[m*K + g + i] = bf16(x[m, g + 2i]), xb[m*K + g + 32 + i] = bf16(x[m, g + 2i + 1]) per group g.
BF16 void cq_permute_x_bf16(const float *x, int64_t M, int64_t K, uint16_t *xb) {
    __attribute__((aligned(64))) uint16_t ev[32], od[32];
    for (int i = 0; i < 32; i++) { ev[i] = (uint16_t)(2 * i); od[i] = (uint16_t)(2 * i + 1); }
    const __m512i iev = _mm512_load_si512(ev), iod = _mm512_load_si512(od);
    for (int64_t m = 0; m < M; m++)
        for (int64_t g = 0; g < K; g += G) {
            const float *s = x + m * K + g;
            // Words 0..31 = x[g..g+31], 32..63 (second vector) = x[g+32..g+63], in order.
            const __m512i lo = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(s + 16), _mm512_loadu_ps(s));
            const __m512i hi = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(s + 48), _mm512_loadu_ps(s + 32));
            _mm512_storeu_si512((void *)(xb + m * K + g), _mm512_permutex2var_epi16(lo, iev, hi));
            _mm512_storeu_si512((void *)(xb + m * K + g + 32), _mm512_permutex2var_epi16(lo, iod, hi));
        }
}

BF16 static inline __attribute__((always_inline)) void
tile(const cq_qweight *w, int64_t n0, const int R, const cq_tile_scales *scales, const uint16_t *xb, const int MT,
     int64_t K, const int DQ, float *out) {
    // Two accumulators per output (even / odd half of each group) for short rows-by-x tiles.
    __m512 acc[4][4], acc2[4][4];
    __m512i tbl[4];
    const uint8_t *p[4];
    cq_row_scales rs[4];
    const int64_t blocks = K / w->block_size;
    cq_tile_rows_at(w, n0, 0, R, scales, K, p, rs);
    for (int r = 0; r < R; r++)
        for (int m = 0; m < MT; m++) acc[r][m] = acc2[r][m] = _mm512_setzero_ps();
    const __m512 cb = _mm512_loadu_ps(w->codebook);
    const int64_t pf = R * K / 2; // bytes from a row to the same position one tile later
    const int64_t per_block = w->block_size / G;
    const uint16_t *xg = xb;
    for (int64_t b = 0; b < blocks; b++) {
        for (int r = 0; r < R; r++) {
            const __m512 t = _mm512_mul_ps(cb, _mm512_set1_ps(cq_row_scale_next(&rs[r], b, DQ)));
            tbl[r] = (__m512i)_mm512_cvtne2ps_pbh(t, t); // words 16..31 repeat 0..15
            _mm_prefetch((const char *)p[r] + pf, _MM_HINT_T0);
        }
        for (int64_t g = 0; g < per_block; g++, xg += G) {
            for (int r = 0; r < R; r++) {
                const __m512i v = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)p[r]));
                const __m512bh od = (__m512bh)_mm512_permutexvar_epi16(v, tbl[r]);
                const __m512bh ev = (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(v, 4), tbl[r]);
                for (int m = 0; m < MT; m++) {
                    const __m512bh xe = (__m512bh)_mm512_loadu_si512((const void *)(xg + m * K));
                    const __m512bh xo = (__m512bh)_mm512_loadu_si512((const void *)(xg + m * K + G / 2));
                    acc[r][m] = _mm512_dpbf16_ps(acc[r][m], ev, xe);
                    if (MT <= 2)
                        acc2[r][m] = _mm512_dpbf16_ps(acc2[r][m], od, xo);
                    else
                        acc[r][m] = _mm512_dpbf16_ps(acc[r][m], od, xo);
                }
                p[r] += G / 2;
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int m = 0; m < MT; m++) out[r * 4 + m] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][m], acc2[r][m]));
}

/// x for the paired tiles, bf16: per block pair (2·bs elements from base), per 64-element piece
/// c and half q of it, 32 words of block 2j then 32 of block 2j+1, each in element order:
/// xb[base + 128c + 64q + 32h + i] = bf16(x[base + bs·h + 64c + 32q + i]).
BF16 void cq_permute_x_bf16_paired(const float *x, int64_t M, int64_t K, int64_t bs, uint16_t *xb) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t base = 0; base < K; base += 2 * bs)
            for (int64_t c = 0; c < bs / 64; c++)
                for (int q = 0; q < 2; q++)
                    for (int h = 0; h < 2; h++) {
                        const float *s = x + m * K + base + bs * h + 64 * c + 32 * q;
                        _mm512_storeu_si512((void *)(xb + m * K + base + 128 * c + 64 * q + 32 * h),
                                            (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(s + 16), _mm512_loadu_ps(s)));
                    }
}

/// The paired order (cqlora.h): 32 bytes -> 32 words; vpermw reads bits 4:0 of a word and the
/// table repeats its 16 entries, so the words themselves give block 2j's codes (low nibbles) and
/// the words >> 4 block 2j+1's; both halves of the pair in element order (cq_permute_x_bf16_paired).
BF16 static inline __attribute__((always_inline)) void
pair_tile(const cq_qweight *w, int64_t n0, const int R, const cq_tile_scales *scales, const uint16_t *xb, const int MT,
          int64_t K, const int DQ, float *out) {
    __m512 acc[4][4], acc2[4][4];
    __m512i ta[4], tb[4];
    const uint8_t *p[4];
    cq_row_scales rs[4];
    const int64_t blocks = K / w->block_size;
    cq_tile_rows_at(w, n0, 0, R, scales, K, p, rs);
    for (int r = 0; r < R; r++)
        for (int m = 0; m < MT; m++) acc[r][m] = acc2[r][m] = _mm512_setzero_ps();
    const __m512 cb = _mm512_loadu_ps(w->codebook);
    const int64_t pf = R * K / 2;
    const int64_t subs = w->block_size / 64;
    const uint16_t *xg = xb;
    for (int64_t b = 0; b < blocks; b += 2) {
        for (int r = 0; r < R; r++) {
            const __m512 a = _mm512_mul_ps(cb, _mm512_set1_ps(cq_row_scale_next(&rs[r], b, DQ)));
            const __m512 o = _mm512_mul_ps(cb, _mm512_set1_ps(cq_row_scale_next(&rs[r], b + 1, DQ)));
            ta[r] = (__m512i)_mm512_cvtne2ps_pbh(a, a);
            tb[r] = (__m512i)_mm512_cvtne2ps_pbh(o, o);
        }
        for (int64_t c = 0; c < subs; c++) {
            for (int r = 0; r < R; r++) _mm_prefetch((const char *)p[r] + pf, _MM_HINT_T0);
            for (int q = 0; q < 2; q++, xg += 64) {
                for (int r = 0; r < R; r++) {
                    const __m512i v = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(p[r] + 32 * q)));
                    const __m512bh ev = (__m512bh)_mm512_permutexvar_epi16(v, ta[r]);
                    const __m512bh od = (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(v, 4), tb[r]);
                    for (int m = 0; m < MT; m++) {
                        const __m512bh xe = (__m512bh)_mm512_loadu_si512((const void *)(xg + m * K));
                        const __m512bh xo = (__m512bh)_mm512_loadu_si512((const void *)(xg + m * K + 32));
                        acc[r][m] = _mm512_dpbf16_ps(acc[r][m], ev, xe);
                        if (MT <= 2)
                            acc2[r][m] = _mm512_dpbf16_ps(acc2[r][m], od, xo);
                        else
                            acc[r][m] = _mm512_dpbf16_ps(acc[r][m], od, xo);
                    }
                }
            }
            for (int r = 0; r < R; r++) p[r] += 64;
        }
    }
    for (int r = 0; r < R; r++)
        for (int m = 0; m < MT; m++) out[r * 4 + m] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][m], acc2[r][m]));
}

#define KERNEL(F, R, MT) if (dq) F(w, n0, R, scales, xb, MT, K, 1, out); else F(w, n0, R, scales, xb, MT, K, 0, out);
#define CASE(R, MT) case (R) * 8 + (MT): \
    if (w->paired) { KERNEL(pair_tile, R, MT) } else { KERNEL(tile, R, MT) } break;
BF16 void cq_gemv_tile_bf16(const cq_qweight *w, int64_t n0, int nrows, const cq_tile_scales *scales,
                            const uint16_t *xb, int mt, int64_t K, float *out) {
    const int dq = scales->plain == NULL;
    switch (nrows * 8 + mt) {
        CQ_EACH_TILE_SHAPE(CASE)
        default: break;
    }
}
#endif
