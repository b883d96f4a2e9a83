// Probe: the M = 1 NF4 kernel (cq_gemv_tile_avx512, the 7B model's format: block 64, double
// quant) in cache vs streaming from DRAM, against a plain AVX-512 read of the same bytes, plus an
// alternative nibble layout (one row at a time; 32 packed bytes broadcast to both halves of a zmm,
// vpsrlvd by 8j | 8j+4 so each 16 weights cost one shift, one vpermps and one FMA), and a
// repacked "paired blocks" layout (pair_repack: blocks 2j and 2j+1 of a row share bytes, low and
// high nibble; 11 instead of 13 port-0/5 µops per 64 weights; adopted in the package since 2026-12-01 as
// cq_pair_nibbles + gemv_avx512.c's pair_tile), one row and 4 rows at a time. One thread,
// thread CPU time (robust to a loaded machine; memory stalls count as CPU time).
// Not part of the package build; after `swift build -c release`:
//   S=Sources/CQLoRAKernels
//   clang -O2 -I$S -I$S/include Benchmarks/probe/gemv_m1.c $S/gemv_avx512.c $S/decode_avx512.c $S/decode_portable.c -o /tmp/gemv_m1
//   /tmp/gemv_m1 256 2000      # 256 rows x 4096: 512 KiB of codes, L2-resident
//   /tmp/gemv_m1 131072 4 1    # 256 MiB (DRAM), last argument 1 = MADV_HUGEPAGE on the codes
#define _GNU_SOURCE
#include "kernels_internal.h"
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <math.h>
#include <time.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

static const float nf4[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                              -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                              0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
                              0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/// The alternative layout's x order per 64 elements: xp[16j + l] = x[8(l & 7) + 2j + (l < 8)]
/// (nibble n of dword i is element 8i + (n ^ 1)).
static void peel_permute(const float *x, int64_t K, float *xp) {
    for (int64_t c = 0; c < K; c += 64)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 16; l++) xp[c + 16 * j + l] = x[c + 8 * (l & 7) + 2 * j + (l < 8)];
}

AVX512 static float peel_row(const uint8_t *p, cq_row_scales *rs, const float *code, const float *xp, int64_t K,
                             int64_t bs) {
    __m512 acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm512_setzero_ps();
    const __m512 cb = _mm512_loadu_ps(code);
    const __m512i s0 = _mm512_set_epi32(4, 4, 4, 4, 4, 4, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i s1 = _mm512_add_epi32(s0, _mm512_set1_epi32(8)), s2 = _mm512_add_epi32(s0, _mm512_set1_epi32(16)),
                  s3 = _mm512_add_epi32(s0, _mm512_set1_epi32(24));
    const int64_t chunks = bs / 64;
    for (int64_t b = 0; b < K / bs; b++) {
        const __m512 tbl = _mm512_mul_ps(cb, _mm512_set1_ps(cq_row_scale_next(rs, b, 1)));
        for (int64_t c = 0; c < chunks; c++, p += 32, xp += 64) {
            if (c % 2 == 0) _mm_prefetch((const char *)p + 2048, _MM_HINT_T1);
            const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
            const int a = (c & 1) ? 4 : 0;
            acc[a] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srlv_epi32(v, s0), tbl), _mm512_loadu_ps(xp), acc[a]);
            acc[a + 1] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srlv_epi32(v, s1), tbl), _mm512_loadu_ps(xp + 16), acc[a + 1]);
            acc[a + 2] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srlv_epi32(v, s2), tbl), _mm512_loadu_ps(xp + 32), acc[a + 2]);
            acc[a + 3] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srlv_epi32(v, s3), tbl), _mm512_loadu_ps(xp + 48), acc[a + 3]);
        }
    }
    for (int s = 4; s >= 1; s /= 2)
        for (int i = 0; i < s; i++) acc[i] = _mm512_add_ps(acc[i], acc[i + s]);
    return _mm512_reduce_add_ps(acc[0]);
}

/// The "paired blocks" layout (a repacking, not bnb's): per row, byte k of 64-byte chunk j holds
/// element k of block 2j in its low nibble and element k of block 2j+1 in its high nibble (block
/// 64). Four 64-byte loads at offsets 0..3 give, in each dword's low 4 bits, the low nibbles of
/// bytes 4i + o (vpermps reads only those bits): block 2j without a shift; one vpsrld 4 per load
/// gives block 2j+1. Per 128 weights: 4 shifts + 8 vpermps + 8 FMAs + 2 table multiplies = 11
/// port-0/5 µops per 64 weights, against 13 for the tile over bnb's layout.
static void pair_repack(const uint8_t *bnb, int64_t rows, int64_t K, uint8_t *out) {
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *src = bnb + r * K / 2;
        uint8_t *dst = out + r * K / 2;
        for (int64_t j = 0; j < K / 128; j++)
            for (int k = 0; k < 64; k++) {
                const int64_t e0 = 128 * j + k, e1 = e0 + 64;
                const int n0 = e0 % 2 ? src[e0 / 2] & 15 : src[e0 / 2] >> 4, n1 = e1 % 2 ? src[e1 / 2] & 15 : src[e1 / 2] >> 4;
                dst[64 * j + k] = (uint8_t)(n0 | n1 << 4);
            }
    }
}

/// x for the paired layout: per 128 elements, for offset o in 0..3 and half h, 16 lanes i:
/// x[128j + 64h + 4i + o] at xp[128j + 32o + 16h + i].
static void pair_permute(const float *x, int64_t K, float *xp) {
    for (int64_t j = 0; j < K / 128; j++)
        for (int o = 0; o < 4; o++)
            for (int h = 0; h < 2; h++)
                for (int i = 0; i < 16; i++) xp[128 * j + 32 * o + 16 * h + i] = x[128 * j + 64 * h + 4 * i + o];
}

AVX512 static float pair_row(const uint8_t *p, cq_row_scales *rs, const float *code, const float *xp, int64_t K) {
    __m512 acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm512_setzero_ps();
    const __m512 cb = _mm512_loadu_ps(code);
    for (int64_t j = 0; j < K / 128; j++, p += 64, xp += 128) {
        _mm_prefetch((const char *)p + 2048, _MM_HINT_T1);
        const __m512 ta = _mm512_mul_ps(cb, _mm512_set1_ps(cq_row_scale_next(rs, 2 * j, 1)));
        const __m512 tb = _mm512_mul_ps(cb, _mm512_set1_ps(cq_row_scale_next(rs, 2 * j + 1, 1)));
        for (int o = 0; o < 4; o++) {
            const __m512i v = _mm512_loadu_si512((const void *)(p + o));
            acc[2 * o] = _mm512_fmadd_ps(_mm512_permutexvar_ps(v, ta), _mm512_load_ps(xp + 32 * o), acc[2 * o]);
            acc[2 * o + 1] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tb), _mm512_load_ps(xp + 32 * o + 16),
                                             acc[2 * o + 1]);
        }
    }
    for (int s = 4; s >= 1; s /= 2)
        for (int i = 0; i < s; i++) acc[i] = _mm512_add_ps(acc[i], acc[i + s]);
    return _mm512_reduce_add_ps(acc[0]);
}

/// The paired layout, 4 rows at a time (x loaded once per 128 elements for the 4 rows; 8 chains).
AVX512 static void pair_tile4(const uint8_t *p, int64_t ldp, cq_row_scales *rs, const float *code, const float *xp,
                              int64_t K, float *out) {
    __m512 acc[4][2];
    for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    const __m512 cb = _mm512_loadu_ps(code);
    for (int64_t j = 0; j < K / 128; j++, p += 64, xp += 128) {
        __m512 ta[4], tb[4];
        for (int r = 0; r < 4; r++) {
            _mm_prefetch((const char *)p + (8 + r) * ldp, _MM_HINT_T1); // two tiles (16 KiB at K = 4096) ahead
            ta[r] = _mm512_mul_ps(cb, _mm512_set1_ps(cq_row_scale_next(&rs[r], 2 * j, 1)));
            tb[r] = _mm512_mul_ps(cb, _mm512_set1_ps(cq_row_scale_next(&rs[r], 2 * j + 1, 1)));
        }
        for (int o = 0; o < 4; o++) {
            const __m512 xa = _mm512_load_ps(xp + 32 * o), xb = _mm512_load_ps(xp + 32 * o + 16);
            for (int r = 0; r < 4; r++) {
                const __m512i v = _mm512_loadu_si512((const void *)(p + r * ldp + o));
                acc[r][0] = _mm512_fmadd_ps(_mm512_permutexvar_ps(v, ta[r]), xa, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tb[r]), xb, acc[r][1]);
            }
        }
    }
    for (int r = 0; r < 4; r++) out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
}

/// y = W x over all rows in 4-row tiles, as gemv.c's driver does for M = 1 with double quant.
static void gemv(const cq_qweight *w, const float *xp, float *y, float *tables, int peel, const uint8_t *paired) {
    const int64_t K = w->cols, blocks = K / w->block_size;
    for (int64_t n0 = 0; n0 < w->rows; n0 += 4) {
        const int nrows = w->rows - n0 < 4 ? (int)(w->rows - n0) : 4;
        const int64_t b0 = n0 * blocks, b2 = b0 / w->block_size2, b2_last = (b0 + nrows * blocks - 1) / w->block_size2;
        cq_dq_tables_avx512(w, b2, b2_last - b2 + 1, tables);
        const cq_tile_scales s = {NULL, w->qabsmax + b0, tables, b2};
        float dots[16];
        if (!peel) {
            cq_gemv_tile_avx512(w, n0, nrows, &s, xp, 1, K, dots);
            for (int r = 0; r < nrows; r++) y[n0 + r] = dots[r * 4];
        } else if (peel == 1)
            for (int r = 0; r < nrows; r++) {
                cq_row_scales rs = cq_row_scales_at(w, &s, r, blocks, b0);
                y[n0 + r] = peel_row(w->packed + (n0 + r) * K / 2, &rs, w->codebook, xp, K, w->block_size);
            }
        else if (peel == 2 || nrows < 4)
            for (int r = 0; r < nrows; r++) {
                cq_row_scales rs = cq_row_scales_at(w, &s, r, blocks, b0);
                y[n0 + r] = pair_row(paired + (n0 + r) * K / 2, &rs, w->codebook, xp, K);
            }
        else {
            cq_row_scales rs[4];
            for (int r = 0; r < 4; r++) rs[r] = cq_row_scales_at(w, &s, r, blocks, b0);
            pair_tile4(paired + n0 * K / 2, K / 2, rs, w->codebook, xp, K, y + n0);
        }
    }
}

AVX512 static int read_all(const uint8_t *p, size_t bytes) {
    __m512i a = _mm512_setzero_si512(), b = a;
    for (size_t i = 0; i + 128 <= bytes; i += 128) {
        a = _mm512_xor_si512(a, _mm512_load_si512(p + i));
        b = _mm512_xor_si512(b, _mm512_load_si512(p + i + 64));
    }
    return _mm512_reduce_add_epi32(_mm512_xor_si512(a, b));
}

int main(int argc, char **argv) {
    const int64_t K = 4096, N = argc > 1 ? atoll(argv[1]) : 256;
    const int reps = argc > 2 ? atoi(argv[2]) : 100, huge = argc > 3 ? atoi(argv[3]) : 0;
    const size_t bytes = (size_t)N * K / 2, page = (size_t)2 << 20;
    uint8_t *packed = aligned_alloc(page, (bytes + page - 1) / page * page);
    uint8_t *paired = aligned_alloc(page, (bytes + 64 + page - 1) / page * page); // + 64: loads at offsets 1..3
    if (huge) { madvise(packed, bytes, MADV_HUGEPAGE); madvise(paired, bytes, MADV_HUGEPAGE); }
    srand(1);
    for (size_t i = 0; i < bytes; i++) packed[i] = (uint8_t)rand();
    const int64_t nb = N * K / 64, nb2 = (nb + 255) / 256;
    uint8_t *q = malloc(nb);
    float *absmax2 = malloc(nb2 * sizeof(float)), code2[256];
    for (int64_t i = 0; i < nb; i++) q[i] = (uint8_t)rand();
    for (int64_t i = 0; i < nb2; i++) absmax2[i] = 0.01f + (float)(rand() % 100) * 1e-4f;
    for (int i = 0; i < 256; i++) code2[i] = (float)(i - 128) / 128.0f;
    const cq_qweight w = {packed, N, K, 64, nf4, NULL, q, code2, absmax2, 0.05f, 256};
    float *x = malloc(K * sizeof(float)), *xold = aligned_alloc(64, K * sizeof(float)),
          *xpeel = aligned_alloc(64, K * sizeof(float)), *y0 = malloc(N * sizeof(float)), *y1 = malloc(N * sizeof(float));
    float *tables = aligned_alloc(64, 4 * 256 * sizeof(float));
    for (int64_t i = 0; i < K; i++) x[i] = (float)(rand() % 2001 - 1000) / 1000.0f;
    for (int64_t g = 0; g < K; g += 32)
        for (int i = 0; i < 16; i++) { xold[g + i] = x[g + 2 * i]; xold[g + 16 + i] = x[g + 2 * i + 1]; }
    peel_permute(x, K, xpeel);
    float *xpair = aligned_alloc(64, K * sizeof(float)), *y2 = malloc(N * sizeof(float));
    pair_repack(packed, N, K, paired);
    pair_permute(x, K, xpair);
    gemv(&w, xold, y0, tables, 0, NULL);
    gemv(&w, xpeel, y1, tables, 1, NULL);
    gemv(&w, xpair, y2, tables, 2, paired);
    float *y3 = malloc(N * sizeof(float));
    gemv(&w, xpair, y3, tables, 3, paired);
    double diff = 0, diff2 = 0;
    for (int64_t i = 0; i < N; i++) {
        diff = fabs(y0[i] - y1[i]) > diff ? fabs(y0[i] - y1[i]) : diff;
        diff2 = fabs(y0[i] - y2[i]) > diff2 ? fabs(y0[i] - y2[i]) : diff2;
        diff2 = fabs(y0[i] - y3[i]) > diff2 ? fabs(y0[i] - y3[i]) : diff2;
    }
    printf("N=%ld K=%ld (%.1f MiB of codes), huge pages %s; max |tile - peel| %.2g, max |tile - paired| %.2g\n", (long)N,
           (long)K, bytes / 1048576.0, huge ? "advised" : "no", diff, diff2);
    int sink = 0;
    for (int round = 0; round < 3; round++) {
        double t = cpu_now();
        for (int i = 0; i < reps; i++) {
            sink += read_all(packed, bytes);
            __asm__ volatile("" : : "r"(packed) : "memory"); // the bytes may change: read them again
        }
        const double tr = (cpu_now() - t) / reps;
        t = cpu_now();
        for (int i = 0; i < reps; i++) gemv(&w, xold, y0, tables, 0, NULL);
        const double tt = (cpu_now() - t) / reps;
        t = cpu_now();
        for (int i = 0; i < reps; i++) gemv(&w, xpeel, y1, tables, 1, NULL);
        const double tp = (cpu_now() - t) / reps;
        t = cpu_now();
        for (int i = 0; i < reps; i++) gemv(&w, xpair, y2, tables, 2, paired);
        const double tq = (cpu_now() - t) / reps;
        t = cpu_now();
        for (int i = 0; i < reps; i++) gemv(&w, xpair, y3, tables, 3, paired);
        const double t4 = (cpu_now() - t) / reps;
        const double gw = (double)N * K * 1e-9;
        printf("read %.2f GB/s | tile %.2f GB/s = %.2f Gweights/s | peel %.2f GB/s = %.2f Gweights/s | paired %.2f = %.2f Gw/s | paired 4 rows %.2f GB/s = %.2f Gw/s\n",
               bytes / tr * 1e-9, bytes / tt * 1e-9, gw / tt, bytes / tp * 1e-9, gw / tp, bytes / tq * 1e-9, gw / tq,
               bytes / t4 * 1e-9, gw / t4);
    }
    return sink == 42;
}
