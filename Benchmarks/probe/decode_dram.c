// Probe (not part of the package): why the 7B decode streams its weights at only ~0.6x a plain read.
// The decode's GEMVs from DRAM — L layers of Llama-2-7B's projections (q, k, v, o 4096x4096; gate,
// up 11008x4096; down 4096x11008), NF4 block 64 + double quant, paired order, random codes, one
// huge-page buffer (L = 8: 835 MB, beyond the 260 MB LLC) — against a streaming read of the same
// bytes, in interleaved rounds of one process (the host's bandwidth drifts within minutes), 2 threads.
// Variants: the package's tile (gemv_avx512.c compiled again per software-prefetch variant by
// decode_dram.sh, through gemv.c's streaming driver); the tile's access pattern without arithmetic;
// the tile's arithmetic without x loads or scales (WORK); driver options (scales decoded up front,
// double-quant codes prefetched). L2=1: the same in cache (256 rows per thread, best of 40 sets).
// Usage: [L2=1] [ROWS1=1: one row at a time] Benchmarks/probe/decode_dram.sh [layers=8] [rounds=5] [threads=2]
//
// Measured 2026-12-01 (Xeon EMR VM, 2 cores, ~2.9 GHz; ratios of medians within one run; runs differ):
//   stream read 27-30 GB/s; the shipped tile 0.53-0.70x of it; no software prefetch 0.33-0.42x; T0,
//   T2, 8-64 KiB distances within the noise of T1 16 KiB; NTA 0.23-0.26x; one row at a time (one
//   sequential stream per thread) no better. The same access pattern without arithmetic: 0.91-1.04x.
//   The tile's arithmetic alone (x in registers, no scales): 0.72-0.81x — an upper bound for any
//   exact f32 kernel of this instruction mix. Scales decoded up front or their codes prefetched: no
//   measurable change. In L2 one thread runs the tile at 27-30 weights/ns (~9.5-10 per cycle, ~85%
//   of its port-0/5 bound of 11.6) and the arithmetic alone at 30.4: compute per core (~14-15 GB/s
//   of codes) is about one core's share of the read, so only a near-perfect overlap of compute and
//   memory would reach 0.85x, and the probe shows the overlap is far from perfect.
#define _GNU_SOURCE
#include "kernels_internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void (*tile_fn)(const cq_qweight *, int64_t, int, const cq_tile_scales *, const float *, int, int64_t, float *);
#define VARIANTS(X) X(v_default, "T1 16K (shipped)") X(v_none, "no prefetch") X(v_t0, "T0 16K") X(v_t1_8k, "T1 8K") \
    X(v_t1_32k, "T1 32K") X(v_nta, "NTA 16K") X(v_t2, "T2 16K") X(v_t1_64k, "T1 64K") X(v_half, "T1 16K, every other 64 B") \
    X(p_read4, "pattern read, T1 16K") X(p_read4_nopf, "pattern read, no prefetch") \
    X(p_work, "pair tile arithmetic, no x loads") X(p_work_x, "... with x loads") X(p_work_s, "... with scale walk") \
    X(p_work_xs, "... with both")
// The tile's access pattern without its arithmetic: 4 row streams, 64 bytes of each in turn.
#include <immintrin.h>
#define READ4(NAME, PF) __attribute__((target("avx512f"))) void NAME(const cq_qweight *w, int64_t n0, int R, \
        const cq_tile_scales *s, const float *xp, int mt, int64_t K, float *out) { \
    const uint8_t *p = w->packed + n0 * K / 2; __m512i acc = _mm512_setzero_si512(); \
    for (int64_t c = 0; c < K / 2; c += 64) for (int r = 0; r < 4; r++) { \
        if (PF) _mm_prefetch((const char *)p + r * K / 2 + c + 16384, _MM_HINT_T1); \
        acc = _mm512_xor_si512(acc, _mm512_load_si512((const void *)(p + r * K / 2 + c))); } \
    out[0] = (float)_mm512_reduce_add_epi32(acc); (void)R; (void)s; (void)xp; (void)mt; }
READ4(p_read4, 1)
READ4(p_read4_nopf, 0)
// The pair tile's loads, shifts, vpermps and FMAs per 64 bytes of each of 4 rows; XL: x loaded as the
// tile does (else x in registers); SC: the tile's scale walk (else constant tables).
#define WORK(NAME, XL, SC) __attribute__((target("avx512f"))) void NAME(const cq_qweight *w, int64_t n0, int R, \
        const cq_tile_scales *s, const float *xp, int mt, int64_t K, float *out) { \
    const uint8_t *p = w->packed + n0 * K / 2; \
    __m512 acc[8], ta[4], tb[4]; const __m512 cb = _mm512_loadu_ps(w->codebook); \
    const __m512 x0 = _mm512_loadu_ps(xp), x1 = _mm512_loadu_ps(xp + 16); \
    cq_row_scales rs[4]; const uint8_t *pp[4]; cq_tile_rows_at(w, n0, 0, 4, s, K, pp, rs); \
    for (int r = 0; r < 4; r++) ta[r] = cb, tb[r] = _mm512_mul_ps(cb, _mm512_set1_ps(0.5f)); \
    for (int i = 0; i < 8; i++) acc[i] = _mm512_setzero_ps(); \
    const float *xg = xp; \
    for (int64_t c = 0, b = 0; c < K / 2; c += 64, b += 2, xg += 128) { \
        if (SC) for (int r = 0; r < 4; r++) { \
            ta[r] = _mm512_mul_ps(cb, _mm512_set1_ps(cq_row_scale_next(&rs[r], b, s->plain == NULL))); \
            tb[r] = _mm512_mul_ps(cb, _mm512_set1_ps(cq_row_scale_next(&rs[r], b + 1, s->plain == NULL))); } \
        for (int r = 0; r < 4; r++) _mm_prefetch((const char *)p + r * K / 2 + c + 16384, _MM_HINT_T1); \
        for (int o = 0; o < 4; o++) \
            for (int r = 0; r < 4; r++) { \
                const __m512i v = _mm512_loadu_si512((const void *)(p + r * K / 2 + c + o)); \
                acc[2 * r] = _mm512_fmadd_ps(_mm512_permutexvar_ps(v, ta[r]), XL ? _mm512_loadu_ps(xg + 32 * o) : x0, acc[2 * r]); \
                acc[2 * r + 1] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tb[r]), \
                                                 XL ? _mm512_loadu_ps(xg + 32 * o + 16) : x1, acc[2 * r + 1]); } } \
    for (int i = 1; i < 8; i++) acc[0] = _mm512_add_ps(acc[0], acc[i]); \
    out[0] = _mm512_reduce_add_ps(acc[0]); (void)R; (void)mt; }
WORK(p_work, 0, 0)
WORK(p_work_x, 1, 0)
WORK(p_work_s, 0, 1)
WORK(p_work_xs, 1, 1)
#define DECL(f, n) void f(const cq_qweight *, int64_t, int, const cq_tile_scales *, const float *, int, int64_t, float *);
VARIANTS(DECL)
#define ENTRY(f, n) {f, n, 0, 0},
/// scales: the driver decodes the tile's block scales up front (plain scales to the tile);
/// qpf: it prefetches the double-quant codes of the tile that many tiles ahead.
static const struct { tile_fn fn; const char *name; int scales, qpf; } variants[] = {VARIANTS(ENTRY)
    {v_default, "shipped + gathered scales", 1, 0}, {v_default, "shipped + qabsmax prefetch", 0, 2},
    {v_default, "shipped + both", 1, 2}};
enum { NV = sizeof variants / sizeof variants[0] };

static int ROWS1 = 0;
/// out[i] = tables[256·((b0 + i) / bs2 - b2) + q[b0 + i]] for i < n: the scalar walk's values, 16 at a time.
__attribute__((target("avx512f"))) static void gather_scales(const uint8_t *q, int64_t b0, int64_t n, int64_t bs2, int64_t b2,
                                                              const float *tables, float *out) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i code = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q + b0 + i)));
        // nested block of each lane: (b0 + i + lane) / bs2 (bs2 = 256: a shift)
        const __m512i nest = _mm512_srli_epi32(_mm512_add_epi32(_mm512_set1_epi32((int)(b0 + i - b2 * bs2)), lane), 8);
        _mm512_storeu_ps(out + i, _mm512_i32gather_ps(_mm512_add_epi32(code, _mm512_slli_epi32(nest, 8)), tables, 4));
    }
    for (; i < n; i++) out[i] = tables[256 * ((b0 + i) / bs2 - b2) + q[b0 + i]];
}
static int cmp(const void *a, const void *b) { const double d = *(const double *)a - *(const double *)b; return (d > 0) - (d < 0); }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

typedef struct { const cq_qweight *w; const float *xp; float *y; tile_fn tile; float *rowbufs; int scales, qpf; } job;

static void worker(void *p, int t, int nt) {
    const job *j = (const job *)p;
    const cq_qweight *w = j->w;
    const int64_t K = w->cols, blocks = K / w->block_size, ntiles = w->rows / 4;
    float *rowbuf = j->rowbufs + t * (K + 1024);
    const cq_gemm_isa isa = cq_gemm_isa_current();
    for (int64_t tt = ntiles * t / nt; tt < ntiles * (t + 1) / nt; tt++) {
        const int64_t b0 = tt * 4 * blocks, nb = 4 * blocks;
        if (j->qpf) // the scales of the tile qpf tiles ahead
            for (int64_t o = 0; o < nb; o += 64) _mm_prefetch((const char *)(w->qabsmax + b0 + j->qpf * nb + o), _MM_HINT_T1);
        cq_tile_scales s = {w->absmax ? w->absmax + b0 : NULL, NULL, NULL, 0};
        if (!w->absmax) {
            const int64_t b2 = b0 / w->block_size2, b2_last = (b0 + nb - 1) / w->block_size2;
            isa.dq_tables(w, b2, b2_last - b2 + 1, rowbuf);
            s = (cq_tile_scales){NULL, w->qabsmax + b0, rowbuf, b2};
            if (j->scales) { // the tile's block scales decoded up front (16 table lookups per gather)
                float *sc = rowbuf + 4 * 256 + 64;
                gather_scales(w->qabsmax, b0, nb, w->block_size2, b2, rowbuf, sc);
                s = (cq_tile_scales){sc, NULL, NULL, 0};
            }
        }
        float d[16];
        if (ROWS1) { // one row at a time: each thread's share is one sequential stream
            for (int r = 0; r < 4; r++) {
                cq_tile_scales s1 = s;
                if (s1.plain) s1.plain += r * blocks; else s1.q += r * blocks;
                j->tile(w, tt * 4 + r, 1, &s1, j->xp, 1, K, d + 4 * r);
            }
        } else j->tile(w, tt * 4, 4, &s, j->xp, 1, K, d);
        for (int r = 0; r < 4; r++) j->y[tt * 4 + r] = d[4 * r];
    }
}

int main(int argc, char **argv) {
    ROWS1 = getenv("ROWS1") != NULL;
    const int L = argc > 1 ? atoi(argv[1]) : 8, rounds = argc > 2 ? atoi(argv[2]) : 5, threads = argc > 3 ? atoi(argv[3]) : 2;
    const int64_t shapes[7][2] = {{4096, 4096}, {4096, 4096}, {4096, 4096}, {4096, 4096}, {11008, 4096}, {11008, 4096}, {4096, 11008}};
    size_t codes = 0, blocks = 0;
    for (int i = 0; i < 7; i++) { codes += (size_t)shapes[i][0] * shapes[i][1] / 2; blocks += (size_t)shapes[i][0] * shapes[i][1] / 64; }
    codes *= L; blocks *= L;
    uint8_t *buf = cq_alloc_aligned(codes + 64), *q = cq_alloc_aligned(blocks);
    float *a2 = malloc((blocks / 256 + 1) * 4), code2[256], nf4[16];
    for (size_t i = 0; i < codes + 64; i++) buf[i] = (uint8_t)(i * 2654435761u >> 13);
    for (size_t i = 0; i < blocks; i++) q[i] = (uint8_t)(i * 40503u >> 5);
    for (size_t i = 0; i <= blocks / 256; i++) a2[i] = 0.01f + (float)(i % 7) * 1e-3f;
    for (int i = 0; i < 256; i++) code2[i] = (i - 127.5f) / 128.0f;
    for (int i = 0; i < 16; i++) nf4[i] = (i - 7.5f) / 7.5f;
    cq_qweight w[7 * 64];
    size_t off = 0, boff = 0;
    for (int l = 0; l < L; l++)
        for (int i = 0; i < 7; i++) {
            const int64_t N = shapes[i][0], K = shapes[i][1];
            w[7 * l + i] = (cq_qweight){buf + off, N, K, 64, nf4, NULL, q + boff, code2, a2 + boff / 256, 0.001f, 256, 1};
            off += (size_t)N * K / 2; boff += (size_t)N * K / 64; // every matrix's blocks are whole nested blocks
        }
    float *x = malloc(11008 * 4), *xp4 = cq_alloc_aligned(4096 * 4), *xp11 = cq_alloc_aligned(11008 * 4), *y = malloc(11008 * 4);
    for (int i = 0; i < 11008; i++) x[i] = (float)((i * 37) % 201 - 100) / 100.0f;
    cq_permute_x_paired(x, 1, 4096, 64, xp4);
    cq_permute_x_paired(x, 1, 11008, 64, xp11);
    float *rowbufs = cq_alloc_aligned((size_t)threads * (11008 + 1024) * 4);
    const double bytes = (double)codes + (double)blocks;
    if (getenv("L2")) { // compute rate in cache: one 4096x4096 matrix's first 256·threads rows again and again
        cq_qweight small = w[0];
        float *plain = malloc(256 * 64 * threads * 4);
        for (int i = 0; i < 256 * 64 * threads; i++) plain[i] = 0.01f + (float)(i % 13) * 1e-3f;
        if (getenv("PLAIN")) small.absmax = plain, small.qabsmax = NULL;
        for (int th = 1; th <= threads; th++) {
            small.rows = 256 * th;
            for (int v = 0; v < NV; v++) {
                if (v != 0 && v < NV - 3) continue; // the shipped tile and the last variant
                job j = {&small, xp4, y, variants[v].fn, rowbufs, variants[v].scales, variants[v].qpf};
                double t = 1e9; // best of 40 sets of 100 (the host's noise only slows)
                for (int set = 0; set < 40; set++) {
                    const double t0 = now();
                    for (int it = 0; it < 100; it++) cq_parallel(th, worker, &j);
                    if (now() - t0 < t) t = now() - t0;
                }
                printf("L2, %d thread(s), %s: %.2f GB/s of codes, %.2f weights/ns per thread\n", th, variants[v].name,
                       100.0 * small.rows * 4096 / 2 / t * 1e-9, 100.0 * small.rows * 4096 / t * 1e-9 / th);
            }
        }
        return 0;
    }
    printf("%d layers: %.0f MB of codes + qabsmax, %d threads, %d rounds\n", L, bytes / 1e6, threads, rounds);
    double gbs[NV][64], rd[64 * (NV + 1)]; int nr = 0;
    volatile uint64_t sink = 0;
    for (int round = 0; round < rounds; round++) {
        for (int k = 0; k < NV; k++) {
            const int v = (k + round) % NV;
            double t = now(); sink ^= cq_stream_read(buf, codes / 64 * 64, threads); rd[nr++] = codes / 64 * 64 / (now() - t) * 1e-9;
            t = now();
            for (int l = 0; l < L; l++)
                for (int i = 0; i < 7; i++) {
                    job j = {&w[7 * l + i], w[7 * l + i].cols == 4096 ? xp4 : xp11, y, variants[v].fn, rowbufs, variants[v].scales, variants[v].qpf};
                    cq_parallel(threads, worker, &j);
                }
            gbs[v][round] = bytes / (now() - t) * 1e-9;
        }
    }
    qsort(rd, nr, sizeof(double), cmp);
    const double rmed = rd[nr / 2];
    printf("stream read: median %.2f GB/s (%.2f-%.2f)\n", rmed, rd[0], rd[nr - 1]);
    for (int v = 0; v < NV; v++) {
        double s[64]; memcpy(s, gbs[v], rounds * sizeof(double)); qsort(s, rounds, sizeof(double), cmp);
        printf("%-28s median %.2f GB/s = %.2fx read (%.2f-%.2f)\n", variants[v].name, s[rounds / 2], s[rounds / 2] / rmed, s[0], s[rounds - 1]);
    }
    return (int)(sink & 0);
}
