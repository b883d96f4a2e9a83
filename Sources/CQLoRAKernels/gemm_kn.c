// The backward GEMMs — dX = dY·W (W f32, or 4-bit decoded on the fly) and dW = dYᵀ·X — as one
// driver: C[p, q] = Σ_s L[s, p]·R[s, q] with s the reduction. Both operands are packed k-major
// (L in panels of MR lanes, R in tiles of NR columns) from rows of their source, or from its
// columns when the source is stored the other way round (dY in dX = dY·W). So W's rows are
// decoded or copied as they lie — no transpose of W, no f32 copy of a 4-bit weight beyond one
// [256, 192] tile block per thread.
//
// Work: each thread owns a contiguous range of R tiles (output columns q) and walks s in blocks
// of KN_SB; per block it packs a chunk of its R tiles and multiplies it against every L panel,
// accumulating into ct[q][p]. L is packed once for all threads per super-block of s (at most
// KN_L_BYTES, so the [tokens, vocab] logits gradient is never packed whole). Every output sums
// its s blocks in order, each block a micro-kernel fma chain from zero: the bits depend on
// neither the thread count nor the panel / tile an output falls in.
#include "kernels_internal.h"
#include <stdlib.h>
#include <string.h>

#define KN_SB 256                        // s per micro-kernel call (fixes every output's order)
#define KN_RCHUNK 192                    // R columns packed per thread at once (multiple of 12 and 64)
// Packed R tiles lie one cache line more than their size apart: at exactly sc·NR floats (12 KiB
// for NR = 12) a packed row's 16 tile slots all fell in one L1 set and evicted each other.
#define KN_TILE_PAD 16
#define KN_MAX_TILES (KN_RCHUNK / 4)     // tiles per chunk at the smallest NR
// A by-rows R (W's rows) is packed row-major, [s][KN_RLD], each row decoded or copied straight into
// place, and a tile is read as 12 of its columns: no per-tile copy. 208 floats = 13 cache lines,
// so the rows a tile reads spread over every L1 set.
#define KN_RLD (KN_RCHUNK + KN_TILE_PAD)
#define KN_L_BYTES ((int64_t)4 << 20)    // packed L per super-block
#define KN_NR_LCM 12                     // a multiple of every ISA's NR (12, 6, 4)

/// An operand: element (s, c) of an f32 source is f[s*ld + c] (rows) or f[c*ld + s] (trans); a
/// 4-bit source's is flat element s*cols + c (its rows, decoded).
typedef struct {
    const float *f;
    const cq_qweight *q;
    int64_t ld;
    int trans;
} kn_src;

static int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/// d[0, n) = v[0, n); the tile widths are constant-size copies (inlined, not a libc call per tile).
static inline void copy_floats(float *d, const float *v, int64_t n) {
    switch (n) {
    case 4: memcpy(d, v, 4 * sizeof(float)); break;
    case 6: memcpy(d, v, 6 * sizeof(float)); break;
    case 12: memcpy(d, v, 12 * sizeof(float)); break;
    case 16: memcpy(d, v, 16 * sizeof(float)); break;
    case 32: memcpy(d, v, 32 * sizeof(float)); break;
    default: memcpy(d, v, (size_t)n * sizeof(float));
    }
}

/// Columns [c0, c0 + n·tw) of rows [s0, s0 + sc) as n tiles dst[t][s][tw] (tile stride sc·tw);
/// columns from c0 + cw on are zero; tile t at dst + t·ts (ts >= sc·tw). row: room for cw decoded
/// values (4-bit sources).
static void pack_tiles(const kn_src *src, const cq_kn_isa *isa, int64_t s0, int64_t sc, int64_t c0, int64_t cw, int tw,
                       int64_t n, int64_t ts, float *dst, float *row) {
    if (cw > n * tw) cw = n * tw;
    if (cw < 0) cw = 0;
    if (src->trans) { // gather columns: whole tiles by the ISA's transposed store, a partial one in s blocks
        const int64_t whole = cw / tw;
        for (int64_t t = 0; t < whole; t++)
            isa->store_t(src->f + (c0 + t * tw) * src->ld + s0, src->ld, NULL, tw, sc, dst + t * ts, tw);
        for (int64_t b0 = 0; b0 < sc; b0 += KN_SB) {
            const int64_t b1 = min64(sc, b0 + KN_SB);
            for (int64_t t = whole; t < n; t++)
                for (int j = 0; j < tw; j++) {
                    float *d = dst + t * ts + j;
                    const int64_t c = t * tw + j;
                    if (c < cw) {
                        const float *col = src->f + (c0 + c) * src->ld + s0;
                        for (int64_t s = b0; s < b1; s++) d[s * tw] = col[s];
                    } else {
                        for (int64_t s = b0; s < b1; s++) d[s * tw] = 0.0f;
                    }
                }
        }
        return;
    }
    for (int64_t s = 0; s < sc; s++) {
        const float *v = row;
        if (src->q) isa->decode(src->q, (s0 + s) * src->q->cols + c0, cw, row);
        else v = src->f + (s0 + s) * src->ld + c0;
        for (int64_t t = 0; t < n; t++) {
            float *d = dst + t * ts + s * tw;
            const int64_t have = cw - t * tw, k = have < 0 ? 0 : have > tw ? tw : have;
            if (k > 0) copy_floats(d, v + t * tw, k);
            if (k < tw) memset(d + k, 0, (size_t)(tw - k) * sizeof(float));
        }
    }
}

/// Columns [c0, c0 + width) of rows [s0, s0 + sc) of a by-rows source into dst[s * KN_RLD + c],
/// decoded (4-bit) or copied straight into place; columns from cw on are zero.
static void pack_rows(const kn_src *src, const cq_kn_isa *isa, int64_t s0, int64_t sc, int64_t c0, int64_t cw, int64_t width,
                      float *dst) {
    if (cw > width) cw = width;
    if (cw < 0) cw = 0;
    for (int64_t s = 0; s < sc; s++) {
        float *d = dst + s * KN_RLD;
        if (cw > 0) {
            if (src->q) isa->decode(src->q, (s0 + s) * src->q->cols + c0, cw, d);
            else memcpy(d, src->f + (s0 + s) * src->ld + c0, (size_t)cw * sizeof(float));
        }
        if (cw < width) memset(d + cw, 0, (size_t)(width - cw) * sizeof(float));
    }
}

typedef struct {
    cq_kn_isa isa;
    kn_src L, R;
    int64_t P, Q;
    float *C;
    int64_t ldp, ldq;        // C[p, q] at C[p*ldp + q*ldq]
    int64_t npanels;
    int last;                // the last L panel's lanes (mrp, or mrp/2 with a half kernel)
    float *Lp, *ct;
    int64_t ldc, tiles;
    char *per_thread;
    size_t stride;
    int64_t ss0, ssc;        // the super-block of s in this region
    int first, final;
} kn_job;

static int lanes(const kn_job *j, int64_t p) { return p == j->npanels - 1 ? j->last : j->isa.mrp; }

/// Panel p of the s block starting b0 into the super-block (sc values of s): the blocks lie one
/// after another, each holding its panels one after another (one contiguous run per block).
static float *l_panel(const kn_job *j, int64_t b0, int64_t sc, int64_t p) {
    return j->Lp + b0 * j->npanels * j->isa.mrp + p * sc * j->isa.mrp;
}

/// An f32 operand stored by rows is read in place where a whole panel / tile lies inside it.
static int in_place(const kn_src *src, int64_t c0, int w, int64_t n) { return src->f && !src->trans && c0 + w <= n; }

static void pack_l_range(void *ctx, int64_t p0, int64_t p1) {
    const kn_job *j = (const kn_job *)ctx;
    const int mrp = j->isa.mrp;
    for (int64_t b0 = 0; b0 < j->ssc; b0 += KN_SB) {
        const int64_t sc = min64(KN_SB, j->ssc - b0);
        for (int64_t p = p0; p < p1; p++)
            if (!in_place(&j->L, p * mrp, lanes(j, p), j->P))
                pack_tiles(&j->L, &j->isa, j->ss0 + b0, sc, p * mrp, j->P - p * mrp, lanes(j, p), 1, sc * lanes(j, p),
                           l_panel(j, b0, sc, p), NULL);
    }
}

/// C from ct for columns [q0, q1): C's rows along the lanes (dX, dW = [N ≤ K, K]) by the ISA's
/// transposed store, else a tile of NR at a time (ct rows stay in L1).
static void store(const kn_job *j, int64_t q0, int64_t q1) {
    if (j->ldp != 1 && j->ldq == 1) {
        j->isa.store_t(j->ct + q0 * j->ldc, j->ldc, NULL, q1 - q0, j->P, j->C + q0, j->ldp);
        return;
    }
    for (int64_t a = q0; a < q1; a += j->isa.nr) {
        const int64_t b = min64(q1, a + j->isa.nr);
        if (j->ldp == 1) {
            for (int64_t q = a; q < b; q++)
                for (int64_t p = 0; p < j->P; p++) j->C[p + q * j->ldq] = j->ct[q * j->ldc + p];
        } else {
            for (int64_t p = 0; p < j->P; p++)
                for (int64_t q = a; q < b; q++) j->C[p * j->ldp + q * j->ldq] = j->ct[q * j->ldc + p];
        }
    }
}

/// Asks for C's lines of rows [p0, p1) and columns [q0, q1) in L2 (C stored along the lanes), so
/// that the final store finds them there instead of waiting for memory (C is usually cold).
static void prefetch_c(const kn_job *j, int64_t p0, int64_t p1, int64_t q0, int64_t q1) {
    if (q0 >= q1) return;
    for (int64_t p = p0; p < p1; p++) {
        __builtin_prefetch(j->C + p * j->ldp + q0, 1, 2);
        __builtin_prefetch(j->C + p * j->ldp + q1 - 1, 1, 2);
    }
}

static void kn_worker(void *ctx, int t, int nt) {
    const kn_job *j = (const kn_job *)ctx;
    const int nr = j->isa.nr, mrp = j->isa.mrp;
    const int64_t a = j->tiles * t / nt, b = j->tiles * (t + 1) / nt, ldc = j->ldc, chunk = KN_RCHUNK / nr;
    if (a >= b) return;
    float *rp = (float *)(j->per_thread + (size_t)t * j->stride), *row = rp + KN_SB * KN_RLD;
    if (j->first) memset(j->ct + a * nr * ldc, 0, (size_t)((b - a) * nr * ldc) * sizeof(float));
    for (int64_t s0 = j->ss0; s0 < j->ss0 + j->ssc; s0 += KN_SB) {
        const int64_t sc = min64(KN_SB, j->ss0 + j->ssc - s0);
        // C's lines are asked for during the last two s blocks (the last one may be short).
        const int prefetch = j->final && s0 + sc + KN_SB >= j->ss0 + j->ssc && j->ldp != 1 && j->ldq == 1;
        for (int64_t c = a; c < b; c += chunk) {
            const int64_t e = min64(c + chunk, b);
            // Against a single L panel each R value feeds one fma and packing would cost as much:
            // R's rows are then read in place (but a partial last tile). Else R is packed: streaming
            // W's rows once beats reading 12-column strips of them per tile (the lm_head).
            int64_t c1 = c;
            while (j->npanels == 1 && c1 < e && in_place(&j->R, c1 * nr, nr, j->Q)) c1++;
            // R by rows: packed row-major (tile = NR of its columns); by columns: into k-major tiles.
            const int64_t ts = sc * nr + KN_TILE_PAD;
            const int rows = !j->R.trans;
            if (c1 < e && rows) pack_rows(&j->R, &j->isa, s0, sc, c1 * nr, j->Q - c1 * nr, (e - c1) * nr, rp);
            else if (c1 < e) pack_tiles(&j->R, &j->isa, s0, sc, c1 * nr, j->Q - c1 * nr, nr, e - c1, ts, rp, row);
            for (int64_t tt = c; tt < e; tt++) {
                const float *w = tt < c1 ? j->R.f + s0 * j->R.ld + tt * nr : rows ? rp + (tt - c1) * nr : rp + (tt - c1) * ts;
                const int64_t ldw = tt < c1 ? j->R.ld : rows ? KN_RLD : nr;
                float *ctile = j->ct + tt * nr * ldc;
                for (int64_t p = 0; p < j->npanels; p++) {
                    const int wd = lanes(j, p);
                    const int direct = in_place(&j->L, p * mrp, wd, j->P);
                    const float *x = direct ? j->L.f + s0 * j->L.ld + p * mrp : l_panel(j, s0 - j->ss0, sc, p);
                    (wd == mrp ? j->isa.kernel : j->isa.half)(x, direct ? j->L.ld : wd, w, ldw, sc, ctile + p * mrp, ldc);
                    if (prefetch) prefetch_c(j, p * mrp, min64(p * mrp + wd, j->P), tt * nr, min64(tt * nr + nr, j->Q));
                }
            }
        }
    }
    if (j->final) store(j, a * nr, min64(b * nr, j->Q));
}

/// s per super-block: L packed for it fits KN_L_BYTES (whole KN_SB blocks, at least one).
static int64_t super_block(int64_t P, int64_t S) {
    int64_t ss = KN_L_BYTES / (round_up(P, CQ_MRP_MAX) * (int64_t)sizeof(float)) / KN_SB * KN_SB;
    if (ss < KN_SB) ss = KN_SB;
    return min64(ss, S);
}

static size_t per_thread_bytes(void) {
    // R packed row-major ([KN_SB][KN_RLD]) or as tiles (KN_RCHUNK·KN_SB plus pads: fits), then a decode row.
    return cq_align64((size_t)(KN_SB * KN_RLD + KN_RCHUNK) * sizeof(float));
}

static size_t kn_scratch_bytes(int64_t P, int64_t Q, int64_t S, int threads) {
    if (P <= 0 || Q <= 0 || S <= 0) return 0;
    const int64_t ppad = round_up(P, CQ_MRP_MAX);
    return cq_align64((size_t)(ppad * super_block(P, S)) * sizeof(float)) +
           cq_align64((size_t)(round_up(Q, KN_NR_LCM) * ppad) * sizeof(float)) + (size_t)(threads < 1 ? 1 : threads) * per_thread_bytes();
}

static void kn_run(kn_src L, kn_src R, int64_t P, int64_t Q, int64_t S, float *C, int64_t ldp, int64_t ldq, void *scratch,
                   int threads) {
    if (P <= 0 || Q <= 0) return;
    if (S <= 0) {
        for (int64_t p = 0; p < P; p++)
            for (int64_t q = 0; q < Q; q++) C[p * ldp + q * ldq] = 0.0f;
        return;
    }
    if (threads < 1) threads = 1;
    kn_job j = {.isa = cq_kn_isa_current(), .L = L, .R = R, .P = P, .Q = Q, .C = C, .ldp = ldp, .ldq = ldq};
    const int mrp = j.isa.mrp;
    j.npanels = (P + mrp - 1) / mrp;
    j.last = mrp;
    if (j.isa.half && P % mrp != 0 && P % mrp <= mrp / 2) j.last = mrp / 2;
    j.ldc = round_up(P, CQ_MRP_MAX);
    j.tiles = (Q + j.isa.nr - 1) / j.isa.nr;
    const int64_t ssmax = super_block(P, S);
    char *base = (char *)scratch;
    j.Lp = (float *)base;
    j.ct = (float *)(base + cq_align64((size_t)(j.ldc * ssmax) * sizeof(float)));
    j.per_thread = (char *)j.ct + cq_align64((size_t)(round_up(Q, KN_NR_LCM) * j.ldc) * sizeof(float));
    j.stride = per_thread_bytes();
    int team = P * Q * S > 65536 ? threads : 1;
    if (team > j.tiles) team = (int)j.tiles;
    for (int64_t ss0 = 0; ss0 < S; ss0 += ssmax) {
        j.ss0 = ss0;
        j.ssc = min64(ssmax, S - ss0);
        j.first = ss0 == 0;
        j.final = ss0 + ssmax >= S;
        if (!in_place(&j.L, (j.npanels - 1) * mrp, j.last, P)) // else every panel is read in place
            cq_parallel_for(j.npanels, P * j.ssc > 65536 ? threads : 1, pack_l_range, &j);
        cq_parallel(team, kn_worker, &j);
    }
}

// ---- dX = dY·W for W [N, K ≤ 16] (LoRA's B: dh = dY·B): the forward's 16-lane micro-kernel
// (cq_gemm_isa: AVX-512 half panel, AVX2 / portable full) with B as its k-major x side ([N][16],
// zero-padded when K < 16) and NR rows of dY as its weight rows, read in place: dY is streamed
// once and never packed. Each output is one fma chain over all N; threads split dY's rows.
#define NARROW_LANES 16

typedef struct {
    const float *dy, *b16;
    float *dx, *tail;        // tail: the last partial tile's dY rows, zero-padded [NR][N]
    int64_t M, N, K, tiles;
    cq_gemm_kernel_fn kernel;
    int nr;
} narrow_job;

static void narrow_range(void *ctx, int64_t t0, int64_t t1) {
    const narrow_job *j = (const narrow_job *)ctx;
    float ct[CQ_NR_AVX512 * NARROW_LANES]; // NR <= 12 rows of 16 lanes
    for (int64_t t = t0; t < t1; t++) {
        const int64_t m0 = t * j->nr, rows = min64(j->nr, j->M - m0);
        const float *w = rows == j->nr ? j->dy + m0 * j->N : j->tail;
        memset(ct, 0, sizeof ct);
        j->kernel(j->b16, w, j->N, j->N, ct, NARROW_LANES);
        for (int64_t r = 0; r < rows; r++) memcpy(j->dx + (m0 + r) * j->K, ct + r * NARROW_LANES, (size_t)j->K * sizeof(float));
    }
}

static size_t narrow_scratch_bytes(int64_t N, int64_t K) {
    return (K < NARROW_LANES ? cq_align64((size_t)(N * NARROW_LANES) * sizeof(float)) : 0) +
           cq_align64((size_t)(CQ_NR_AVX512 * N) * sizeof(float));
}

static void narrow_nn(const float *dy, int64_t M, const float *w, int64_t N, int64_t K, float *dx, void *scratch, int threads) {
    const cq_gemm_isa isa = cq_gemm_isa_current();
    narrow_job j = {.dy = dy, .b16 = w, .dx = dx, .M = M, .N = N, .K = K, .nr = isa.nr,
                    .kernel = isa.mrp == NARROW_LANES ? isa.kernel : isa.half};
    j.tiles = (M + j.nr - 1) / j.nr;
    char *s = (char *)scratch;
    if (K < NARROW_LANES) {
        float *b16 = (float *)s;
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < NARROW_LANES; i++) b16[n * NARROW_LANES + i] = i < K ? w[n * K + i] : 0.0f;
        j.b16 = b16;
        s += cq_align64((size_t)(N * NARROW_LANES) * sizeof(float));
    }
    j.tail = (float *)s;
    const int64_t m0 = (j.tiles - 1) * j.nr, rows = M - m0;
    if (rows < j.nr) {
        memcpy(j.tail, dy + m0 * N, (size_t)(rows * N) * sizeof(float));
        memset(j.tail + rows * N, 0, (size_t)((j.nr - rows) * N) * sizeof(float));
    }
    cq_parallel_for(j.tiles, M * N * K > 65536 ? threads : 1, narrow_range, &j);
}

static int nn_narrow(int64_t N, int64_t K) { return K <= NARROW_LANES && N > 0 && K > 0; }

// ---- dX = dY·W: dY [M, N], W [N, K]. Lanes over the rows of dY (L = dY by columns, R = W's rows),
// or for a narrow or short f32 W (K < 32, or N <= 32: LoRA's A in dh·A) lanes over K (L = W's
// rows, read in place; R = dY by columns, small) — the result's rows are then stored contiguously.
static int nn_lanes_over_k(int64_t N, int64_t K, int quantized) { return !quantized && (K < 32 || N <= 32); }

size_t cq_gemm_nn_scratch_bytes(int64_t M, int64_t N, int64_t K, int quantized, int threads) {
    if (!quantized && nn_narrow(N, K)) return narrow_scratch_bytes(N, K);
    return nn_lanes_over_k(N, K, quantized) ? kn_scratch_bytes(K, M, N, threads) : kn_scratch_bytes(M, K, N, threads);
}

void cq_gemm_nn(const float *dy, int64_t M, const float *w, int64_t N, int64_t K, float *dx, void *scratch, int threads) {
    const kn_src byColumns = {dy, NULL, N, 1}, wRows = {w, NULL, K, 0};
    if (M > 0 && nn_narrow(N, K)) narrow_nn(dy, M, w, N, K, dx, scratch, threads < 1 ? 1 : threads);
    else if (nn_lanes_over_k(N, K, 0)) kn_run(wRows, byColumns, K, M, N, dx, 1, K, scratch, threads);
    else kn_run(byColumns, wRows, M, K, N, dx, K, 1, scratch, threads);
}

void cq_gemm_nn_q4(const float *dy, int64_t M, const cq_qweight *w, float *dx, void *scratch, int threads) {
    const kn_src byColumns = {dy, NULL, w->rows, 1}, wRows = {NULL, w, 0, 0};
    kn_run(byColumns, wRows, M, w->cols, w->rows, dx, w->cols, 1, scratch, threads);
}

// ---- dW = dYᵀ·X: dY [M, N], X [M, K] → [N, K]; s = the M rows, both operands by rows. Lanes over
// the narrower of N and K (a LoRA gradient's r = 16), tiles over the other.
size_t cq_gemm_tn_scratch_bytes(int64_t M, int64_t N, int64_t K, int threads) {
    return N <= K ? kn_scratch_bytes(N, K, M, threads) : kn_scratch_bytes(K, N, M, threads);
}

void cq_gemm_tn(const float *dy, const float *x, int64_t M, int64_t N, int64_t K, float *dw, void *scratch, int threads) {
    const kn_src dyRows = {dy, NULL, N, 0}, xRows = {x, NULL, K, 0};
    if (N <= K) kn_run(dyRows, xRows, N, K, M, dw, K, 1, scratch, threads);
    else kn_run(xRows, dyRows, K, N, M, dw, 1, K, scratch, threads);
}

// ---- The same with their own scratch (tests, callers outside a plan).
static void *scratch_for(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) abort(); // out of memory: nothing sensible to return
    return p;
}

void cq_matmul_nn_q4(const float *dy, int64_t M, const cq_qweight *w, float *dx, int threads) {
    void *s = scratch_for(cq_gemm_nn_scratch_bytes(M, w->rows, w->cols, 1, threads));
    cq_gemm_nn_q4(dy, M, w, dx, s, threads);
    free(s);
}

void cq_matmul_nn(const float *dy, int64_t M, const float *w, int64_t N, int64_t K, float *dx, int threads) {
    void *s = scratch_for(cq_gemm_nn_scratch_bytes(M, N, K, 0, threads));
    cq_gemm_nn(dy, M, w, N, K, dx, s, threads);
    free(s);
}

void cq_matmul_tn(const float *dy, const float *x, int64_t M, int64_t N, int64_t K, float *dw, int threads) {
    void *s = scratch_for(cq_gemm_tn_scratch_bytes(M, N, K, threads));
    cq_gemm_tn(dy, x, M, N, K, dw, s, threads);
    free(s);
}
