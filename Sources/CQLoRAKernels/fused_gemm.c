// Large-M path (fused, and cached mode on an f32 weight): each thread owns a contiguous range of
// output features and walks it in panels of CQ_PANEL_N weight rows. Per K block of CQ_PANEL_K,
// the panel is decoded (4-bit) or copied (f32) into per-thread scratch (96 KiB, stays in L2)
// and multiplied by the packed x with the ISA's micro-kernel. The LoRA up-projection is one extra K block: x gets scaling·xa appended, the
// panel gets the matching B rows. The K blocking is fixed, so each output sums in the same
// order whatever the thread count.
#include "kernels_internal.h"
#include <string.h>

static int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

size_t cq_fused_gemm_scratch_bytes(int64_t M, int64_t K, int32_t r, int threads) {
    const int64_t mpad = round_up(M, CQ_MRP_MAX), kr = K + r;
    const int64_t ldw = r > CQ_PANEL_K ? r : CQ_PANEL_K;
    const size_t per_thread = cq_align64((size_t)(CQ_PANEL_N * ldw) * sizeof(float)) +
                              cq_align64((size_t)(CQ_PANEL_N * mpad) * sizeof(float));
    return cq_align64((size_t)(kr * mpad) * sizeof(float)) + (size_t)threads * per_thread;
}

/// How x is cut into panels: all mrp rows wide, except that a short last panel (<= mrp/2 rows)
/// is packed mrp/2 wide when the ISA has a half kernel. Panel p starts at xp + p*kr*mrp.
typedef struct { int64_t count; int mrp, last; } panels;

static panels x_panels(const cq_gemm_isa *isa, int64_t M) {
    panels p = {(M + isa->mrp - 1) / isa->mrp, isa->mrp, isa->mrp};
    const int64_t tail = M % isa->mrp;
    if (isa->half && tail != 0 && tail <= isa->mrp / 2) p.last = isa->mrp / 2;
    return p;
}

static int width(panels p, int64_t i) { return i == p.count - 1 ? p.last : p.mrp; }

typedef struct {
    const float *x, *xa;
    int64_t M, K;
    int32_t r;
    float scaling;
    panels pn;
    float *xp;
} pack_job;

/// Panels [p0, p1) (width wd): dst[k*wd + i] = x[p*mrp + i, k] for k < K, scaling·xa[.., k-K]
/// after, 0 past M.
static void pack_x_range(void *ctx, int64_t p0, int64_t p1) {
    const pack_job *j = (const pack_job *)ctx;
    const int64_t M = j->M, K = j->K, kr = K + j->r;
    for (int64_t p = p0; p < p1; p++) {
        const int wd = width(j->pn, p);
        float *dst = j->xp + p * kr * j->pn.mrp;
        for (int i = 0; i < wd; i++) {
            const int64_t m = p * j->pn.mrp + i;
            if (m < M) {
                for (int64_t k = 0; k < K; k++) dst[k * wd + i] = j->x[m * K + k];
                for (int32_t k = 0; k < j->r; k++) dst[(K + k) * wd + i] = j->scaling * j->xa[m * j->r + k];
            } else {
                for (int64_t k = 0; k < kr; k++) dst[k * wd + i] = 0.0f;
            }
        }
    }
}

static void pack_x(const float *x, int64_t M, int64_t K, const float *xa, int32_t r, float scaling,
                   panels pn, float *xp, int threads) {
    pack_job job = {x, xa, M, K, r, scaling, pn, xp};
    cq_parallel_for(pn.count, M * K > 65536 ? threads : 1, pack_x_range, &job);
}

/// ct[npad, ldc] += (x block k0..k0+kc) · (decoded panel)ᵀ, one micro-tile at a time.
static void multiply_panel(const cq_gemm_isa *isa, panels pn, const float *xp, int64_t kr, int64_t k0,
                           const float *wp, int64_t ld, int64_t kc, int64_t npad, float *ct, int64_t ldc) {
    for (int64_t j0 = 0; j0 < npad; j0 += isa->nr)
        for (int64_t p = 0; p < pn.count; p++) {
            const int wd = width(pn, p);
            const cq_gemm_kernel_fn kernel = wd == pn.mrp ? isa->kernel : isa->half;
            kernel(xp + p * kr * pn.mrp + k0 * wd, wp + j0 * ld, ld, kc, ct + j0 * ldc + p * pn.mrp, ldc);
        }
}

/// Everything a thread needs for its share of the output features.
typedef struct {
    const cq_gemm_isa *isa;
    panels pn;
    const float *xp, *wf, *B, *bias;
    const cq_qweight *w;
    float *y;
    int64_t M, N, K, kr, ldc, ldw, tiles, panel_tiles;
    int32_t r;
    char *per_thread;
    size_t wp_bytes, stride;
} gemm_job;

/// Thread t of nt: a contiguous range of micro-tiles of output features, in panels.
static void gemm_worker(void *ctx, int t, int nt) {
    const gemm_job *j = (const gemm_job *)ctx;
    const cq_gemm_isa *isa = j->isa;
    const int nr = isa->nr;
    const int64_t N = j->N, K = j->K, ldc = j->ldc, ldw = j->ldw;
    const int32_t r = j->r;
    float *wp = (float *)(j->per_thread + (size_t)t * j->stride);
    float *ct = (float *)(j->per_thread + (size_t)t * j->stride + j->wp_bytes);
    const int64_t first = j->tiles * t / nt, last = j->tiles * (t + 1) / nt;
    for (int64_t a = first; a < last; a += j->panel_tiles) {
        const int64_t b = a + j->panel_tiles < last ? a + j->panel_tiles : last;
        const int64_t n0 = a * nr, nrows = (b * nr < N ? b * nr : N) - n0, npad = (b - a) * nr;
        memset(ct, 0, (size_t)(npad * ldc) * sizeof(float));
        for (int64_t k0 = 0; k0 < K; k0 += CQ_PANEL_K) {
            const int64_t kc = K - k0 < CQ_PANEL_K ? K - k0 : CQ_PANEL_K;
            for (int64_t jr = 0; jr < nrows; jr++) {
                if (j->w) isa->decode(j->w, (n0 + jr) * K + k0, kc, wp + jr * CQ_PANEL_K);
                else memcpy(wp + jr * CQ_PANEL_K, j->wf + (n0 + jr) * K + k0, (size_t)kc * sizeof(float));
            }
            for (int64_t jr = nrows; jr < npad; jr++) memset(wp + jr * CQ_PANEL_K, 0, (size_t)kc * sizeof(float));
            multiply_panel(isa, j->pn, j->xp, j->kr, k0, wp, CQ_PANEL_K, kc, npad, ct, ldc);
        }
        if (r > 0) { // LoRA block: B rows (r values each) against scaling·xa
            for (int64_t jr = 0; jr < nrows; jr++) memcpy(wp + jr * ldw, j->B + (n0 + jr) * r, (size_t)r * sizeof(float));
            for (int64_t jr = nrows; jr < npad; jr++) memset(wp + jr * ldw, 0, (size_t)r * sizeof(float));
            multiply_panel(isa, j->pn, j->xp, j->kr, K, wp, ldw, r, npad, ct, ldc);
        }
        for (int64_t m = 0; m < j->M; m++)
            for (int64_t jr = 0; jr < nrows; jr++)
                j->y[m * N + n0 + jr] = ct[jr * ldc + m] + (j->bias ? j->bias[n0 + jr] : 0.0f);
    }
}

void cq_panel_gemm(const float *x, int64_t M, int64_t N, int64_t K, const cq_qweight *w, const float *wf,
                   const float *xa, const float *B, int32_t r, float scaling, const float *bias, float *y,
                   void *scratch, int threads) {
    const int64_t kr = K + r;
    const cq_gemm_isa isa = cq_gemm_isa_current();
    const panels pn = x_panels(&isa, M);
    const int64_t ldc = round_up(M, CQ_MRP_MAX);
    const int64_t ldw = r > CQ_PANEL_K ? r : CQ_PANEL_K;
    float *xp = (float *)scratch;
    char *per_thread = (char *)scratch + cq_align64((size_t)(kr * ldc) * sizeof(float));
    const size_t wp_bytes = cq_align64((size_t)(CQ_PANEL_N * ldw) * sizeof(float));
    const size_t stride = wp_bytes + cq_align64((size_t)(CQ_PANEL_N * ldc) * sizeof(float));
    pack_x(x, M, K, xa, r, scaling, pn, xp, threads);
    gemm_job job = {&isa, pn, xp, wf, B, bias, w, y, M, N, K, kr, ldc, ldw, (N + isa.nr - 1) / isa.nr,
                    CQ_PANEL_N / isa.nr, r, per_thread, wp_bytes, stride};
    cq_parallel(threads, gemm_worker, &job);
}
