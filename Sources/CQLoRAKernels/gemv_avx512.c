// AVX-512 small-M kernel: streams the packed nibbles of up to 4 weight rows once and dots them
// with up to 4 x rows. 16 packed bytes become 16 even + 16 odd weights via two vpermps over the
// absmax-scaled codebook; x was permuted to match (see kernels_internal.h), so no interleave.
// Requires K % block_size == 0: every row is whole blocks, and all rows of a tile stay in phase.
#include "kernels_internal.h"
#if CQ_X86
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
/// Least prefetch distance of a row stream, in bytes.
#ifndef CQ_GEMV_PREFETCH_BYTES // probes may set it (Benchmarks/probe/decode_dram.c)
#define CQ_GEMV_PREFETCH_BYTES 16384
#endif
#ifndef CQ_GEMV_PREFETCH // a row stream's prefetch (probes may replace it)
#define CQ_GEMV_PREFETCH(addr) _mm_prefetch((const char *)(addr), _MM_HINT_T1)
#endif

AVX512 static inline __attribute__((always_inline)) void
tile(const cq_qweight *w, int64_t n0, const int R, const cq_tile_scales *scales, const float *xperm, const int MT,
     int64_t K, const int DQ, const int PB, float *out) {
    // Two accumulators per output (even / odd half of each group) shorten the FMA chains.
    __m512 acc[4][4], acc2[4][4], tbl[4];
    const uint8_t *p[4];
    cq_row_scales rs[4];
    const int64_t blocks = K / w->block_size;
    cq_tile_rows_at(w, n0, 0, R, scales, K, p, rs);
    for (int r = 0; r < R; r++)
        for (int m = 0; m < MT; m++) acc[r][m] = acc2[r][m] = _mm512_setzero_ps();
    const __m512 cb = _mm512_loadu_ps(w->codebook);
    // Prefetch each row at least 16 KiB ahead: the same position 1 tile later for long rows
    // (down_proj, K = 11008: 22 KiB), 2 tiles for K = 4096 (16 KiB instead of 8: 5-14% faster from
    // DRAM in two interleaved one-thread sets on a loaded Xeon; Benchmarks/probe/gemv_m1.c).
    const int64_t tile_bytes = R * K / 2, pf = tile_bytes * ((CQ_GEMV_PREFETCH_BYTES + tile_bytes - 1) / tile_bytes);
    const int64_t per_block = PB ? PB : w->block_size / CQ_GEMV_GROUP; // PB: compile-time groups per block
    const float *xg = xperm;
    for (int64_t b = 0; b < blocks; b++) {
        for (int r = 0; r < R; r++) {
            tbl[r] = _mm512_mul_ps(cb, _mm512_set1_ps(cq_row_scale_next(&rs[r], b, DQ)));
            // Each row is a short stream; fetch a later tile's rows at the same progress (into
            // L2: T1 measured ~5% faster than T0 here, with PB constant).
            CQ_GEMV_PREFETCH(p[r] + pf);
        }
        for (int64_t g = 0; g < per_block; g++, xg += CQ_GEMV_GROUP) {
            for (int r = 0; r < R; r++) {
                const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p[r]));
                const __m512 ev = _mm512_permutexvar_ps(_mm512_srli_epi32(idx, 4), tbl[r]);
                const __m512 od = _mm512_permutexvar_ps(idx, tbl[r]);
                for (int m = 0; m < MT; m++) {
                    acc[r][m] = _mm512_fmadd_ps(ev, _mm512_loadu_ps(xg + m * K), acc[r][m]);
                    if (MT <= 2) // enough independent chains otherwise; 32 accumulators would spill
                        acc2[r][m] = _mm512_fmadd_ps(od, _mm512_loadu_ps(xg + m * K + 16), acc2[r][m]);
                    else
                        acc[r][m] = _mm512_fmadd_ps(od, _mm512_loadu_ps(xg + m * K + 16), acc[r][m]);
                }
                p[r] += CQ_GEMV_GROUP / 2;
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int m = 0; m < MT; m++) out[r * 4 + m] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][m], acc2[r][m]));
}

/// The paired order (cqlora.h): per 64 bytes of a row (64 codes of block 2j and 64 of block
/// 2j+1), four loads at byte offsets o = 0..3 put the low nibble of byte 4i + o in the low 4 bits
/// of dword i: block 2j's codes with no shift (vpermps reads only bits 3:0), and one vpsrld 4
/// gives block 2j+1's. 11 instead of 13 port-0/5 µops per 64 weights (docs/llama.md); x is
/// permuted to match (cq_permute_x_paired). The loads at offsets 1..3 read up to 3 bytes past a
/// row, so the weight needs 64 readable bytes after its end (QuantizedWeightStorage pads).
AVX512 static inline __attribute__((always_inline)) void
pair_tile(const cq_qweight *w, int64_t n0, const int R, const cq_tile_scales *scales, const float *xperm, const int MT,
          int64_t K, const int DQ, const int SUB, float *out) {
    __m512 acc[4][4], acc2[4][4], ta[4], tb[4];
    const uint8_t *p[4];
    cq_row_scales rs[4];
    const int64_t blocks = K / w->block_size;
    cq_tile_rows_at(w, n0, 0, R, scales, K, p, rs);
    for (int r = 0; r < R; r++)
        for (int m = 0; m < MT; m++) acc[r][m] = acc2[r][m] = _mm512_setzero_ps();
    const __m512 cb = _mm512_loadu_ps(w->codebook);
    const int64_t tile_bytes = R * K / 2, pf = tile_bytes * ((CQ_GEMV_PREFETCH_BYTES + tile_bytes - 1) / tile_bytes);
    const int64_t subs = SUB ? SUB : w->block_size / 64; // 64-byte pieces per block pair
    const float *xg = xperm;
    for (int64_t b = 0; b < blocks; b += 2) {
        for (int r = 0; r < R; r++) {
            ta[r] = _mm512_mul_ps(cb, _mm512_set1_ps(cq_row_scale_next(&rs[r], b, DQ)));
            tb[r] = _mm512_mul_ps(cb, _mm512_set1_ps(cq_row_scale_next(&rs[r], b + 1, DQ)));
        }
        for (int64_t c = 0; c < subs; c++, xg += 128) {
            for (int r = 0; r < R; r++) CQ_GEMV_PREFETCH(p[r] + pf);
            for (int o = 0; o < 4; o++) {
                for (int r = 0; r < R; r++) {
                    const __m512i v = _mm512_loadu_si512((const void *)(p[r] + o));
                    const __m512 ev = _mm512_permutexvar_ps(v, ta[r]);
                    const __m512 od = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tb[r]);
                    for (int m = 0; m < MT; m++) {
                        acc[r][m] = _mm512_fmadd_ps(ev, _mm512_loadu_ps(xg + m * K + 32 * o), acc[r][m]);
                        if (MT <= 2)
                            acc2[r][m] = _mm512_fmadd_ps(od, _mm512_loadu_ps(xg + m * K + 32 * o + 16), acc2[r][m]);
                        else
                            acc[r][m] = _mm512_fmadd_ps(od, _mm512_loadu_ps(xg + m * K + 32 * o + 16), acc[r][m]);
                    }
                }
            }
            for (int r = 0; r < R; r++) p[r] += 64;
        }
    }
    for (int r = 0; r < R; r++)
        for (int m = 0; m < MT; m++) out[r * 4 + m] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][m], acc2[r][m]));
}

/// One tile kernel per nibble order (w->paired) and constant shape; PB / SUB: compile-time
/// groups / 64-byte pieces per block for the common block size 64.
#define KERNEL(F, R, MT, C64) \
    if (w->block_size == 64) { \
        if (dq) F(w, n0, R, scales, xperm, MT, K, 1, C64, out); else F(w, n0, R, scales, xperm, MT, K, 0, C64, out); \
    } else if (dq) F(w, n0, R, scales, xperm, MT, K, 1, 0, out); else F(w, n0, R, scales, xperm, MT, K, 0, 0, out);
#define CASE(R, MT) case (R) * 8 + (MT): \
    if (w->paired) { KERNEL(pair_tile, R, MT, 1) } else { KERNEL(tile, R, MT, 2) } break;
AVX512 void cq_gemv_tile_avx512(const cq_qweight *w, int64_t n0, int nrows, const cq_tile_scales *scales, const float *xperm, int mt,
                                int64_t K, float *out) {
    const int dq = scales->plain == NULL;
    switch (nrows * 8 + mt) {
        CQ_EACH_TILE_SHAPE(CASE)
        default: break;
    }
}
#endif
