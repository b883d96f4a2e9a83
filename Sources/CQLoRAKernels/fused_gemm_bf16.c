// Optional bf16-compute variant of the panel path (fused_gemm.c): same partition and K blocking
// (so the bits do not depend on the thread count), but x and the decoded weight panel are
// rounded to bf16 and multiplied with vdpbf16ps, two k per instruction, accumulating in f32.
// It fits in the f32 path's scratch (cq_fused_gemm_scratch_bytes): bf16 halves x and the panel.
#include "kernels_internal.h"
#include <string.h>

static int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

static uint16_t bf16(float f) { // round to nearest even, as vcvtneps2bf16
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40); // quiet NaN
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static uint32_t pair(const float *v, int64_t i, int64_t n, float s) {
    const uint32_t lo = bf16(s * v[i]), hi = i + 1 < n ? bf16(s * v[i + 1]) : 0;
    return lo | hi << 16;
}

typedef struct {
    const float *x, *xa;
    int64_t M, K;
    int32_t r;
    float scaling;
    uint32_t *xp;
} pack_job;

/// Panels [p0, p1) of 32 x rows: xp[p*kp*32 + kk*32 + i] = (x[m, 2kk], x[m, 2kk+1]) for
/// kk < ceil(K/2), then the pairs of scaling·xa[m, :]; zero past M and past K / r.
static void pack_x_range(void *ctx, int64_t p0, int64_t p1) {
    const pack_job *j = (const pack_job *)ctx;
    const int64_t M = j->M, K = j->K, k2 = (K + 1) / 2, kp = k2 + (j->r + 1) / 2;
    for (int64_t p = p0; p < p1; p++) {
        uint32_t *dst = j->xp + p * kp * CQ_MRP_AVX512;
        for (int i = 0; i < CQ_MRP_AVX512; i++) {
            const int64_t m = p * CQ_MRP_AVX512 + i;
            for (int64_t kk = 0; kk < kp; kk++) {
                uint32_t v = 0;
                if (m < M)
                    v = kk < k2 ? pair(j->x + m * K, 2 * kk, K, 1.0f) : pair(j->xa + m * j->r, 2 * (kk - k2), j->r, j->scaling);
                dst[kk * CQ_MRP_AVX512 + i] = v;
            }
        }
    }
}

static void pack_x(const float *x, int64_t M, int64_t K, const float *xa, int32_t r, float scaling,
                   int64_t ldc, uint32_t *xp, int threads) {
    pack_job job = {x, xa, M, K, r, scaling, xp};
    cq_parallel_for(ldc / CQ_MRP_AVX512, M * K > 65536 ? threads : 1, pack_x_range, &job);
}

/// ct += x pairs [xoff, xoff + ceil(kc/2)) · panel rowsᵀ; rows past nrows are zeroed first.
static void multiply(const uint32_t *xp, int64_t kp, int64_t xoff, uint16_t *wp, int64_t ldw, int64_t kc,
                     int64_t nrows, int64_t npad, int64_t ldc, float *ct) {
    const int nr = CQ_NR_AVX512, mr = CQ_MRP_AVX512;
    for (int64_t j = nrows; j < npad; j++) memset(wp + j * ldw, 0, (size_t)(kc + 1) * sizeof(uint16_t));
    for (int64_t j0 = 0; j0 < npad; j0 += nr)
        for (int64_t m0 = 0; m0 < ldc; m0 += mr)
            cq_gemm_kernel_bf16(xp + (m0 / mr) * kp * mr + xoff * mr, wp + j0 * ldw, ldw, (kc + 1) / 2,
                                ct + j0 * ldc + m0, ldc);
}

/// Everything a thread needs for its share of the output features.
typedef struct {
    const cq_qweight *w;
    const cq_gemm_isa *isa;
    const uint32_t *xp;
    const float *B, *bias;
    float *y;
    int64_t M, kp, k2, ldc, ldw, tiles, panel_tiles;
    int32_t r;
    char *per_thread;
    size_t wp_bytes, stride;
} gemm_job;

/// Thread t of nt: a contiguous range of micro-tiles of output features, in panels.
static void gemm_worker(void *ctx, int t, int nt) {
    const gemm_job *j = (const gemm_job *)ctx;
    const cq_qweight *w = j->w;
    const int64_t N = w->rows, K = w->cols, M = j->M, ldc = j->ldc, ldw = j->ldw;
    const int nr = CQ_NR_AVX512;
    uint16_t *wp = (uint16_t *)(j->per_thread + (size_t)t * j->stride);
    float *ct = (float *)(j->per_thread + (size_t)t * j->stride + j->wp_bytes);
    float row[CQ_PANEL_K];
    const int64_t first = j->tiles * t / nt, last = j->tiles * (t + 1) / nt;
    for (int64_t a = first; a < last; a += j->panel_tiles) {
        const int64_t b = a + j->panel_tiles < last ? a + j->panel_tiles : last;
        const int64_t n0 = a * nr, nrows = (b * nr < N ? b * nr : N) - n0, npad = (b - a) * nr;
        memset(ct, 0, (size_t)(npad * ldc) * sizeof(float));
        for (int64_t k0 = 0; k0 < K; k0 += CQ_PANEL_K) {
            const int64_t kc = K - k0 < CQ_PANEL_K ? K - k0 : CQ_PANEL_K;
            for (int64_t jr = 0; jr < nrows; jr++) {
                j->isa->decode(w, (n0 + jr) * K + k0, kc, row);
                cq_to_bf16(row, kc, wp + jr * ldw);
            }
            multiply(j->xp, j->kp, k0 / 2, wp, ldw, kc, nrows, npad, ldc, ct);
        }
        if (j->r > 0) { // LoRA block: B rows against scaling·xa
            for (int64_t jr = 0; jr < nrows; jr++) cq_to_bf16(j->B + (n0 + jr) * j->r, j->r, wp + jr * ldw);
            multiply(j->xp, j->kp, j->k2, wp, ldw, j->r, nrows, npad, ldc, ct);
        }
        for (int64_t m = 0; m < M; m++)
            for (int64_t jr = 0; jr < nrows; jr++)
                j->y[m * N + n0 + jr] = ct[jr * ldc + m] + (j->bias ? j->bias[n0 + jr] : 0.0f);
    }
}

void cq_panel_gemm_bf16(const float *x, int64_t M, const cq_qweight *w, const float *xa, const float *B, int32_t r,
                        float scaling, const float *bias, float *y, void *scratch, int threads) {
    const int64_t N = w->rows, K = w->cols, kr = K + r, k2 = (K + 1) / 2, kp = k2 + (r + 1) / 2;
    const int nr = CQ_NR_AVX512;
    const int64_t ldc = round_up(M, CQ_MRP_MAX), ldw = r + 1 > CQ_PANEL_K ? r + 1 : CQ_PANEL_K;
    uint32_t *xp = (uint32_t *)scratch;
    // Same offsets as the f32 path's scratch layout, which is at least as large everywhere.
    const int64_t ldw32 = r > CQ_PANEL_K ? r : CQ_PANEL_K;
    char *per_thread = (char *)scratch + cq_align64((size_t)(kr * ldc) * sizeof(float));
    const size_t wp_bytes = cq_align64((size_t)(CQ_PANEL_N * ldw32) * sizeof(float));
    const size_t stride = wp_bytes + cq_align64((size_t)(CQ_PANEL_N * ldc) * sizeof(float));
    pack_x(x, M, K, xa, r, scaling, ldc, xp, threads);
    const cq_gemm_isa isa = cq_gemm_isa_current(); // AVX-512: the f32 decoder
    gemm_job job = {w, &isa, xp, B, bias, y, M, kp, k2, ldc, ldw, (N + nr - 1) / nr, CQ_PANEL_N / nr, r,
                    per_thread, wp_bytes, stride};
    cq_parallel(threads, gemm_worker, &job);
}
