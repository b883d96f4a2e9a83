// Cached mode: the weight is already f32 [N, K]. Not OpenBLAS: its threaded SGEMM/SGEMV give
// different bits for 1 and 2 threads at some shapes (OpenBLAS 0.3.21, e.g. M=24 N=300 K=520:
// each thread's share has its own edge kernels), and results must not depend on the thread
// count. So large M runs the same panel GEMM as the fused path (weight rows copied instead of
// decoded) and small M runs fixed-order dot products, split over output features.
#include "kernels_internal.h"
#include <stdlib.h>
#include <string.h>

/// Below this many rows each weight row is read once and dotted with every x row.
#define CQ_DENSE_GEMM_MIN_M 8

/// y[m, n] = x[m]·W[n] (+ scaling·xa[m]·B[n] + bias[n]), one dot per output, split over n.
static void dense_rows(const float *x, int64_t M, const float *W, int64_t N, int64_t K, const float *xa,
                       const float *B, int32_t r, float scaling, const float *bias, float *y, int threads) {
    const cq_dot_fn dot = cq_gemm_isa_current().dot;
    #pragma omp parallel for schedule(static) num_threads(threads) if (M * N * K > 65536)
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < M; m++) {
            float v = dot(x + m * K, W + n * K, K);
            if (r > 0) v += scaling * dot(xa + m * r, B + n * r, r);
            y[m * N + n] = v + (bias ? bias[n] : 0.0f);
        }
}

/// Shared by cq_dense_linear and cq_matmul_nt; xa is x·Aᵀ (M x r) when r > 0.
static void dense(const float *x, int64_t M, const float *W, int64_t N, int64_t K, const float *xa, const float *B,
                  int32_t r, float scaling, const float *bias, float *y, int threads) {
    if (M >= CQ_DENSE_GEMM_MIN_M) {
        // The panel buffers depend on K and the thread count, which the scratch-size contract
        // (cq_dense_linear_scratch_bytes) does not take; they are allocated here. Without
        // memory, the dot-product path gives the same answer, more slowly.
        void *panels = aligned_alloc(64, cq_fused_gemm_scratch_bytes(M, K, r, threads));
        if (panels) {
            cq_panel_gemm(x, M, N, K, NULL, W, xa, B, r, scaling, bias, y, panels, threads);
            free(panels);
            return;
        }
    }
    dense_rows(x, M, W, N, K, xa, B, r, scaling, bias, y, threads);
}

void cq_matmul_nt(const float *x, int64_t M, const float *W, int64_t N, int64_t K, float *y, int threads) {
    if (M <= 0 || N <= 0) return;
    dense(x, M, W, N, K, NULL, NULL, 0, 0.0f, NULL, y, threads < 1 ? 1 : threads);
}

size_t cq_dense_linear_scratch_bytes(int64_t M, int64_t N, int32_t r) {
    (void)N;
    return M > 0 && r > 0 ? cq_align64((size_t)(M * r) * sizeof(float)) : 0;
}

void cq_dense_linear(const float *x, int64_t M, const float *W, int64_t N, int64_t K,
                     const float *A, const float *B, int32_t r, float scaling,
                     const float *bias, float *y, void *scratch, int threads) {
    if (M <= 0 || N <= 0) return;
    if (threads < 1) threads = 1;
    if (r < 0 || !A || !B) r = 0;
    float *xa = (float *)scratch;
    if (r > 0) cq_lora_down(x, M, K, A, r, xa, threads);
    dense(x, M, W, N, K, xa, B, r, scaling, bias, y, threads);
}
