// Cached mode: the weight is already f32 [N, K]. Not OpenBLAS: its threaded SGEMM/SGEMV give
// different bits for 1 and 2 threads at some shapes (OpenBLAS 0.3.21, e.g. M=24 N=300 K=520:
// each thread's share has its own edge kernels), and results must not depend on the thread
// count. So large M runs the same panel GEMM as the fused path (weight rows copied instead of
// decoded) and small M runs fixed-order dot products, split over output features.
#include "kernels_internal.h"
#include <math.h>
#include <string.h>

/// Below this many rows each weight row is read once and dotted with every x row.
#define CQ_DENSE_GEMM_MIN_M 8

typedef struct {
    const float *x, *W, *xa, *B, *bias;
    float *y;
    int64_t M, N, K;
    int32_t r;
    float scaling;
    cq_dot_fn dot;
} rows_args;

/// Output features [n0, n1): y[m, n] = x[m]·W[n] (+ scaling·xa[m]·B[n] + bias[n]) for every m.
static void rows_range(void *p, int64_t n0, int64_t n1) {
    const rows_args *a = (const rows_args *)p;
    const int64_t M = a->M, N = a->N, K = a->K;
    const int32_t r = a->r;
    for (int64_t n = n0; n < n1; n++)
        for (int64_t m = 0; m < M; m++) {
            float v = a->dot(a->x + m * K, a->W + n * K, K);
            if (r > 0) v += a->scaling * a->dot(a->xa + m * r, a->B + n * r, r);
            a->y[m * N + n] = v + (a->bias ? a->bias[n] : 0.0f);
        }
}

/// y[m, n] = x[m]·W[n] (+ scaling·xa[m]·B[n] + bias[n]), one dot per output, split over n.
static void dense_rows(const float *x, int64_t M, const float *W, int64_t N, int64_t K, const float *xa,
                       const float *B, int32_t r, float scaling, const float *bias, float *y, int threads) {
    rows_args args = {x, W, xa, B, bias, y, M, N, K, r, scaling, cq_gemm_isa_current().dot};
    cq_parallel_for(N, M * N * K > 65536 ? threads : 1, rows_range, &args);
}

/// Shared by cq_dense_linear and cq_matmul_nt; xa is x·Aᵀ (M x r) when r > 0; panels is the
/// panel-GEMM scratch (cq_panel_gemm_scratch_bytes), owned by the caller's plan.
static void dense(const float *x, int64_t M, const float *W, int64_t N, int64_t K, const float *xa, const float *B,
                  int32_t r, float scaling, const float *bias, float *y, void *panels, int threads) {
    if (M >= CQ_DENSE_GEMM_MIN_M && panels) {
        cq_panel_gemm(x, M, N, K, NULL, W, xa, B, r, scaling, bias, y, panels, threads);
        return;
    }
    dense_rows(x, M, W, N, K, xa, B, r, scaling, bias, y, threads);
}

static size_t panel_bytes(int64_t M, int64_t K, int32_t r, int threads) {
    return M >= CQ_DENSE_GEMM_MIN_M ? cq_panel_gemm_scratch_bytes(M, K, r, threads < 1 ? 1 : threads) : 0;
}

size_t cq_matmul_nt_scratch_bytes(int64_t M, int64_t K, int threads) {
    return M > 0 && K > 0 ? panel_bytes(M, K, 0, threads) : 0;
}

void cq_matmul_nt(const float *x, int64_t M, const float *W, int64_t N, int64_t K, float *y, void *scratch, int threads) {
    if (M <= 0 || N <= 0) return;
    dense(x, M, W, N, K, NULL, NULL, 0, 0.0f, NULL, y, scratch, threads < 1 ? 1 : threads);
}

size_t cq_dense_linear_scratch_bytes(int64_t M, int64_t N, int64_t K, int32_t r, int threads) {
    (void)N;
    if (M <= 0) return 0;
    const size_t xa = r > 0 ? cq_align64((size_t)(M * r) * sizeof(float)) : 0;
    return xa + panel_bytes(M, K, r, threads);
}

static void dense_linear(const float *x, int64_t M, const float *W, int64_t N, int64_t K, const float *A, const float *B,
                         int32_t r, float scaling, const float *bias, float *y, const float *given_xa, void *scratch, int threads) {
    if (M <= 0 || N <= 0) return;
    if (threads < 1) threads = 1;
    if (r < 0 || (!A && !given_xa) || !B) r = 0;
    float *xa = given_xa ? (float *)given_xa : (float *)scratch;
    const size_t xa_bytes = r > 0 ? cq_align64((size_t)(M * r) * sizeof(float)) : 0;
    if (r > 0 && !given_xa) cq_lora_down(x, M, K, A, r, xa, threads);
    void *panels = panel_bytes(M, K, r, threads) ? (char *)scratch + xa_bytes : NULL;
    dense(x, M, W, N, K, xa, B, r, scaling, bias, y, panels, threads);
}

void cq_dense_linear(const float *x, int64_t M, const float *W, int64_t N, int64_t K,
                     const float *A, const float *B, int32_t r, float scaling,
                     const float *bias, float *y, void *scratch, int threads) {
    dense_linear(x, M, W, N, K, A, B, r, scaling, bias, y, NULL, scratch, threads);
}

void cq_dense_linear_given_xa(const float *x, int64_t M, const float *W, int64_t N, int64_t K,
                              const float *xa, const float *B, int32_t r, float scaling,
                              const float *bias, float *y, void *scratch, int threads) {
    dense_linear(x, M, W, N, K, NULL, B, r, scaling, bias, y, xa, scratch, threads);
}

// ---- The exact int8 form (cq_exact_int8_blocks): small M reads 1.06 bytes per weight, not 4.

int cq_exact_int8_blocks(const float *w, int64_t N, int64_t K, int8_t *q, float *d) {
    if (N <= 0 || K <= 0 || K > CQ_EXACT_INT8_MAX_K) return 0;
    const int64_t nb = (K + CQ_EXACT_INT8_BLOCK - 1) / CQ_EXACT_INT8_BLOCK;
    for (int64_t n = 0; n < N; n++)
        for (int64_t b = 0; b < nb; b++) {
            const int64_t k0 = b * CQ_EXACT_INT8_BLOCK, len = K - k0 < CQ_EXACT_INT8_BLOCK ? K - k0 : CQ_EXACT_INT8_BLOCK;
            const float *x = w + n * K + k0;
            float amax = 0.0f;
            for (int64_t i = 0; i < len; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
            const float s = amax / 127.0f;
            d[n * nb + b] = s;
            for (int64_t i = 0; i < len; i++) {
                int qi = 0;
                if (s != 0.0f) {
                    const float t = x[i] / s;
                    if (!(t >= -127.0f && t <= 127.0f)) return 0;
                    qi = (int)t;
                    if ((float)qi != t) return 0;
                }
                const float back = (float)qi * s;
                if (memcmp(&back, &x[i], sizeof back) != 0) return 0; // bit for bit (a -0.0 fails too)
                q[n * K + k0 + i] = (int8_t)qi;
            }
        }
    return 1;
}

typedef struct {
    const float *x, *d;
    const int8_t *q;
    float *y;
    int64_t M, N, K;
    cq_dot_fn dot;
} int8_rows_args;

/// rows_range over rows decoded from the int8 form into an L1 buffer: the same dot on the same values.
/// On AVX-512 the decode is fused into a copy of cq_dot_avx512 (same order, same bits).
static void int8_rows_range(void *p, int64_t n0, int64_t n1) {
    const int8_rows_args *a = (const int8_rows_args *)p;
    const int64_t M = a->M, N = a->N, K = a->K, nb = (K + CQ_EXACT_INT8_BLOCK - 1) / CQ_EXACT_INT8_BLOCK;
#if CQ_X86
    if (a->dot == cq_dot_avx512) {
        for (int64_t n = n0; n < n1; n++)
            for (int64_t m = 0; m < M; m++)
                a->y[m * N + n] = cq_dot_exact_int8_avx512(a->x + m * K, a->q + n * K, a->d + n * nb, K) + 0.0f;
        return;
    }
#endif
    float row[CQ_EXACT_INT8_MAX_K] __attribute__((aligned(64)));
    for (int64_t n = n0; n < n1; n++) {
        const int8_t *q = a->q + n * K;
        const float *d = a->d + n * nb;
        for (int64_t b = 0; b < nb; b++) {
            const int64_t k0 = b * CQ_EXACT_INT8_BLOCK, end = K - k0 < CQ_EXACT_INT8_BLOCK ? K : k0 + CQ_EXACT_INT8_BLOCK;
            const float s = d[b];
            for (int64_t k = k0; k < end; k++) row[k] = (float)q[k] * s;
        }
        for (int64_t m = 0; m < M; m++) a->y[m * N + n] = a->dot(a->x + m * K, row, K) + 0.0f;
    }
}

void cq_matmul_nt_exact(const float *x, int64_t M, const float *W, const int8_t *q, const float *d, int64_t N, int64_t K,
                        float *y, void *scratch, int threads) {
    if (M <= 0 || N <= 0) return;
    if (threads < 1) threads = 1;
    if (!q || !d || M >= CQ_DENSE_GEMM_MIN_M || K > CQ_EXACT_INT8_MAX_K) {
        cq_matmul_nt(x, M, W, N, K, y, scratch, threads);
        return;
    }
    int8_rows_args args = {x, d, q, y, M, N, K, cq_gemm_isa_current().dot};
    cq_parallel_for(N, M * N * K > 65536 ? threads : 1, int8_rows_range, &args);
}
