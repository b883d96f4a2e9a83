// AVX-512 small-M kernel: streams the packed nibbles of up to 4 weight rows once and dots them
// with up to 4 x rows. 16 packed bytes become 16 even + 16 odd weights via two vpermps over the
// absmax-scaled codebook; x was permuted to match (see kernels_internal.h), so no interleave.
#include "kernels_internal.h"
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

AVX512 static inline __attribute__((always_inline)) void
tile(const cq_qweight *w, int64_t n0, const int R, const float *xperm, const int MT, int64_t K, float *out) {
    __m512 acc[4][4], tbl[4];
    const uint8_t *p[4];
    int64_t e[4];
    for (int r = 0; r < R; r++) {
        for (int m = 0; m < MT; m++) acc[r][m] = _mm512_setzero_ps();
        e[r] = (n0 + r) * K;
        p[r] = w->packed + (e[r] >> 1);
    }
    const __m512 cb = _mm512_loadu_ps(w->codebook);
    const int64_t bs = w->block_size, G = K / CQ_GEMV_GROUP;
    int64_t g = 0;
    while (g < G) {
        // A segment of groups in which no row changes block (rows may be out of phase).
        int64_t seg = G - g;
        for (int r = 0; r < R; r++) {
            const int64_t left = (bs - e[r] % bs) / CQ_GEMV_GROUP;
            if (left < seg) seg = left;
            tbl[r] = _mm512_mul_ps(cb, _mm512_set1_ps(cq_block_absmax(w, e[r] / bs)));
        }
        for (int64_t s = 0; s < seg; s++, g++) {
            const float *xg = xperm + g * CQ_GEMV_GROUP;
            for (int r = 0; r < R; r++) {
                const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p[r]));
                const __m512 ev = _mm512_permutexvar_ps(_mm512_srli_epi32(idx, 4), tbl[r]);
                const __m512 od = _mm512_permutexvar_ps(idx, tbl[r]);
                for (int m = 0; m < MT; m++) {
                    acc[r][m] = _mm512_fmadd_ps(ev, _mm512_loadu_ps(xg + m * K), acc[r][m]);
                    acc[r][m] = _mm512_fmadd_ps(od, _mm512_loadu_ps(xg + m * K + 16), acc[r][m]);
                }
                p[r] += CQ_GEMV_GROUP / 2;
            }
        }
        for (int r = 0; r < R; r++) e[r] += seg * CQ_GEMV_GROUP;
    }
    for (int r = 0; r < R; r++)
        for (int m = 0; m < MT; m++) out[r * 4 + m] = _mm512_reduce_add_ps(acc[r][m]);
}

#define CASE(R, MT) case (R) * 8 + (MT): tile(w, n0, R, xperm, MT, K, out); break;
AVX512 void cq_gemv_tile_avx512(const cq_qweight *w, int64_t n0, int nrows, const float *xperm, int mt,
                                int64_t K, float *out) {
    switch (nrows * 8 + mt) {
        CASE(1, 1) CASE(1, 2) CASE(1, 3) CASE(1, 4)
        CASE(2, 1) CASE(2, 2) CASE(2, 3) CASE(2, 4)
        CASE(3, 1) CASE(3, 2) CASE(3, 3) CASE(3, 4)
        CASE(4, 1) CASE(4, 2) CASE(4, 3) CASE(4, 4)
        default: break;
    }
}
