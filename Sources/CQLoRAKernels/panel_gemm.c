// Large-M path (fused, and cached mode on an f32 weight), for one element kind (panel_kind.h:
// f32, or bf16 pairs with vdpbf16ps): each thread owns a contiguous range of output features and
// walks it in panels of CQ_PANEL_N weight rows. Per K block of CQ_PANEL_K, the panel is decoded
// (4-bit) or copied (f32 weight), and rounded for bf16, into per-thread scratch (96 KiB at most,
// stays in L2) and multiplied by the packed x with the kind's micro-kernel. The LoRA
// up-projection is one extra K block: x gets scaling·xa appended, the panel gets the matching B
// rows. The K blocking is fixed, so each output sums in the same order whatever the thread count.
#include "panel_kind.h"
#include <string.h>

static int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

/// The f32 layout; the bf16 kind's x and panel (half the bytes per element) fit in it.
size_t cq_panel_gemm_scratch_bytes(int64_t M, int64_t K, int32_t r, int threads) {
    const int64_t mpad = round_up(M, CQ_MRP_MAX), kr = K + r;
    const int64_t ldw = r > CQ_PANEL_K ? r : CQ_PANEL_K;
    const size_t per_thread = cq_align64((size_t)(CQ_PANEL_N * ldw) * sizeof(float)) +
                              cq_align64((size_t)(CQ_PANEL_N * mpad) * sizeof(float));
    return cq_align64((size_t)(kr * mpad) * sizeof(float)) + (size_t)threads * per_thread;
}

/// How x is cut into panels: all mrp rows wide, except that a short last panel (<= mrp/2 rows)
/// is packed mrp/2 wide when the kind has a half kernel. Panel p starts at step p*steps*mrp.
typedef struct { int64_t count; int mrp, last; } panels;

static panels x_panels(const cq_panel_kind *kind, int64_t M) {
    panels p = {(M + kind->mrp - 1) / kind->mrp, kind->mrp, kind->mrp};
    const int64_t tail = M % kind->mrp;
    if (kind->half && tail != 0 && tail <= kind->mrp / 2) p.last = kind->mrp / 2;
    return p;
}

static int width(panels p, int64_t i) { return i == p.count - 1 ? p.last : p.mrp; }

/// x steps holding n values of k.
static int64_t steps(const cq_panel_kind *kind, int64_t n) { return (n + kind->kstep - 1) / kind->kstep; }

/// x panel p's step s, row 0 (4 bytes per step and row).
static void *x_at(void *xp, panels pn, int64_t p, int64_t xsteps, int64_t s) {
    return (char *)xp + (size_t)(p * xsteps * pn.mrp + s * width(pn, p)) * 4;
}

typedef struct {
    const cq_panel_kind *kind;
    const float *x, *xa;
    int64_t M, K;
    int32_t r;
    float scaling;
    panels pn;
    int64_t xsteps; // steps(K) + steps(r)
    void *xp;
} pack_job;

/// Panels [p0, p1): x rows, then scaling·xa, as steps; zero past M.
static void pack_x_range(void *ctx, int64_t p0, int64_t p1) {
    const pack_job *j = (const pack_job *)ctx;
    const cq_panel_kind *kind = j->kind;
    const int64_t kx = steps(kind, j->K);
    for (int64_t p = p0; p < p1; p++) {
        const int wd = width(j->pn, p);
        // A whole f32 panel of x rows is one transpose: the ISA's transposed store.
        const int whole = kind->kstep == 1 && p * j->pn.mrp + wd <= j->M;
        if (whole) kind->store_t(j->x + p * j->pn.mrp * j->K, j->K, NULL, wd, j->K, x_at(j->xp, j->pn, p, j->xsteps, 0), wd);
        for (int i = 0; i < wd; i++) {
            const int64_t m = p * j->pn.mrp + i;
            char *row = (char *)x_at(j->xp, j->pn, p, j->xsteps, 0) + 4 * i; // lane i of step 0
            if (m < j->M) {
                if (!whole) kind->pack_x(j->x + m * j->K, j->K, NULL, row, wd);
                kind->pack_x(j->xa + m * j->r, j->r, &j->scaling, row + (size_t)(kx * wd) * 4, wd);
            } else {
                kind->pack_x(NULL, j->xsteps * kind->kstep, NULL, row, wd);
            }
        }
    }
}

/// Where the panel's results go: y rows [0, M), columns [0, ncols), row stride ldy.
typedef struct {
    float *y;
    int64_t ldy, ncols, M;
} y_region;

/// Asks for y's lines of x panel p's rows and micro-tile columns [j0, j0 + nr) in L2, so that
/// the epilogue's stores find them there instead of waiting for memory (y is usually cold).
static void prefetch_y(const y_region *yr, panels pn, int64_t p, int64_t j0, int nr) {
    if (j0 >= yr->ncols) return;
    const int64_t j1 = (j0 + nr < yr->ncols ? j0 + nr : yr->ncols) - 1;
    const int64_t m1 = p * pn.mrp + width(pn, p) < yr->M ? p * pn.mrp + width(pn, p) : yr->M;
    for (int64_t m = p * pn.mrp; m < m1; m++) {
        __builtin_prefetch(yr->y + m * yr->ldy + j0, 1, 2);
        __builtin_prefetch(yr->y + m * yr->ldy + j1, 1, 2);
    }
}

/// ct[npad, ldc] += (x steps s0 .. s0+ns) · (weight panel)ᵀ, one micro-tile at a time; prefetches
/// yr's lines along (NULL: none).
static void multiply_panel(const cq_panel_kind *kind, panels pn, void *xp, int64_t xsteps, int64_t s0,
                           const char *wp, int64_t ldw, int64_t ns, int64_t npad, float *ct, int64_t ldc,
                           const y_region *yr) {
    for (int64_t j0 = 0; j0 < npad; j0 += kind->nr)
        for (int64_t p = 0; p < pn.count; p++) {
            const cq_gemm_kernel_fn kernel = width(pn, p) == pn.mrp ? kind->kernel : kind->half;
            kernel(x_at(xp, pn, p, xsteps, s0), wp + (size_t)(j0 * ldw) * kind->wsize, ldw, ns, ct + j0 * ldc + p * pn.mrp,
                   ldc);
            if (yr) prefetch_y(yr, pn, p, j0, kind->nr);
        }
}

/// Everything a thread needs for its share of the output features.
typedef struct {
    const cq_panel_kind *kind;
    panels pn;
    void *xp;
    const float *wf, *B, *bias;
    const cq_qweight *w;
    float *y;
    int64_t M, N, K, xsteps, ldc, ldw, tiles, panel_tiles;
    int32_t r;
    char *per_thread;
    size_t wp_bytes, stride;
} gemm_job;

/// Weight panel row from n f32 values at v, in the kind's element type.
static void store_row(const cq_panel_kind *kind, const float *v, int64_t n, void *dst) {
    if (kind->to_bf16) kind->to_bf16(v, n, (uint16_t *)dst);
    else memcpy(dst, v, (size_t)n * sizeof(float));
}

/// Weight row n, columns [k0, k0 + kc): decoded (4-bit) or the f32 weight's, into dst. An f32
/// panel takes the decoded values directly; bf16 rounds them from `row` (kc floats).
static void weight_row(const gemm_job *j, int64_t n, int64_t k0, int64_t kc, float *row, void *dst) {
    const cq_panel_kind *kind = j->kind;
    if (!j->w) { store_row(kind, j->wf + n * j->K + k0, kc, dst); return; }
    float *out = kind->to_bf16 ? row : (float *)dst;
    kind->decode(j->w, n * j->K + k0, kc, out);
    if (kind->to_bf16) kind->to_bf16(out, kc, (uint16_t *)dst);
}

/// y = ct + 0 without a bias (as ever: a -0 sum is stored as +0).
static const float no_bias[CQ_PANEL_N];

/// Thread t of nt: a contiguous range of micro-tiles of output features, in panels.
static void gemm_worker(void *ctx, int t, int nt) {
    const gemm_job *j = (const gemm_job *)ctx;
    const cq_panel_kind *kind = j->kind;
    const int nr = kind->nr;
    const int64_t N = j->N, K = j->K, ldc = j->ldc, ldw = j->ldw;
    const int32_t r = j->r;
    char *wp = j->per_thread + (size_t)t * j->stride;
    float *ct = (float *)(j->per_thread + (size_t)t * j->stride + j->wp_bytes);
    const size_t row_bytes = (size_t)ldw * kind->wsize;
    float row[CQ_PANEL_K];
    const int64_t first = j->tiles * t / nt, last = j->tiles * (t + 1) / nt;
    for (int64_t a = first; a < last; a += j->panel_tiles) {
        const int64_t b = a + j->panel_tiles < last ? a + j->panel_tiles : last;
        const int64_t n0 = a * nr, nrows = (b * nr < N ? b * nr : N) - n0, npad = (b - a) * nr;
        memset(ct, 0, (size_t)(npad * ldc) * sizeof(float));
        const y_region yr = {j->y + n0, N, nrows, j->M};
        // A whole panel of an f32 weight is read where it lies (row stride K): a copy would only
        // stream it through the cache once more.
        const int in_place = !j->w && !kind->to_bf16 && nrows == npad;
        for (int64_t k0 = 0; k0 < K; k0 += CQ_PANEL_K) {
            const int64_t kc = K - k0 < CQ_PANEL_K ? K - k0 : CQ_PANEL_K, ns = steps(kind, kc);
            const char *src = in_place ? (const char *)(j->wf + n0 * K + k0) : wp;
            if (!in_place) {
                for (int64_t jr = 0; jr < nrows; jr++) weight_row(j, n0 + jr, k0, kc, row, wp + jr * row_bytes);
                for (int64_t jr = nrows; jr < npad; jr++) memset(wp + jr * row_bytes, 0, (size_t)(ns * kind->kstep) * kind->wsize);
            }
            multiply_panel(kind, j->pn, j->xp, j->xsteps, k0 / kind->kstep, src, in_place ? K : ldw, ns, npad, ct, ldc, k0 == 0 ? &yr : NULL);
        }
        if (r > 0) { // LoRA block: B rows (r values each) against scaling·xa
            const int64_t ns = steps(kind, r);
            for (int64_t jr = 0; jr < nrows; jr++) store_row(kind, j->B + (n0 + jr) * r, r, wp + jr * row_bytes);
            for (int64_t jr = nrows; jr < npad; jr++) memset(wp + jr * row_bytes, 0, (size_t)(ns * kind->kstep) * kind->wsize);
            multiply_panel(kind, j->pn, j->xp, j->xsteps, steps(kind, K), wp, ldw, ns, npad, ct, ldc, NULL);
        }
        kind->store_t(ct, ldc, j->bias ? j->bias + n0 : no_bias, nrows, j->M, j->y + n0, N);
    }
}

static void panel_gemm(const cq_panel_kind *kind, const float *x, int64_t M, int64_t N, int64_t K,
                       const cq_qweight *w, const float *wf, const float *xa, const float *B, int32_t r,
                       float scaling, const float *bias, float *y, void *scratch, int threads) {
    const panels pn = x_panels(kind, M);
    const int64_t xsteps = steps(kind, K) + steps(kind, r);
    const int64_t ldc = round_up(M, CQ_MRP_MAX);
    // Weight panel rows: a K block, or the LoRA block's r values rounded up to whole steps.
    const int64_t rpad = steps(kind, r) * kind->kstep, ldw = rpad > CQ_PANEL_K ? rpad : CQ_PANEL_K;
    // Offsets of the f32 layout (cq_panel_gemm_scratch_bytes), which holds every kind.
    const int64_t ldw32 = r > CQ_PANEL_K ? r : CQ_PANEL_K;
    char *per_thread = (char *)scratch + cq_align64((size_t)((K + r) * ldc) * sizeof(float));
    const size_t wp_bytes = cq_align64((size_t)(CQ_PANEL_N * ldw32) * sizeof(float));
    const size_t stride = wp_bytes + cq_align64((size_t)(CQ_PANEL_N * ldc) * sizeof(float));
    pack_job pack = {kind, x, xa, M, K, r, scaling, pn, xsteps, scratch};
    cq_parallel_for(pn.count, M * K > 65536 ? threads : 1, pack_x_range, &pack);
    gemm_job job = {kind, pn, scratch, wf, B, bias, w, y, M, N, K, xsteps, ldc, ldw, (N + kind->nr - 1) / kind->nr,
                    CQ_PANEL_N / kind->nr, r, per_thread, wp_bytes, stride};
    cq_parallel(threads, gemm_worker, &job);
}

void cq_panel_gemm(const float *x, int64_t M, int64_t N, int64_t K, const cq_qweight *w, const float *wf,
                   const float *xa, const float *B, int32_t r, float scaling, const float *bias, float *y,
                   void *scratch, int threads) {
    const cq_panel_kind kind = cq_panel_kind_f32();
    panel_gemm(&kind, x, M, N, K, w, wf, xa, B, r, scaling, bias, y, scratch, threads);
}

void cq_panel_gemm_bf16(const float *x, int64_t M, const cq_qweight *w, const float *xa, const float *B, int32_t r,
                        float scaling, const float *bias, float *y, void *scratch, int threads) {
    const cq_panel_kind kind = cq_panel_kind_bf16(cq_bf16_isa_current());
    panel_gemm(&kind, x, M, w->rows, w->cols, w, NULL, xa, B, r, scaling, bias, y, scratch, threads);
}

void cq_panel_gemm_bf16_dense(const float *x, int64_t M, int64_t N, int64_t K, const float *wf, float *y, void *scratch,
                              int threads) {
    const cq_panel_kind kind = cq_panel_kind_bf16(cq_bf16_isa_current());
    panel_gemm(&kind, x, M, N, K, NULL, wf, NULL, NULL, 0, 0.0f, NULL, y, scratch, threads);
}
