// Cached mode: the weight is already f32 [N, K]. OpenBLAS does the matmuls (SGEMV for one row);
// the LoRA term is two more BLAS calls, y += scaling·(x·Aᵀ)·Bᵀ, then the bias.
// OpenBLAS splits SGEMM/SGEMV over output blocks, never over K, so its bits do not depend on
// the thread count (KernelTests checks this at the shapes it uses).
#include "kernels_internal.h"
#include <cblas.h>
#include <string.h>

void openblas_set_num_threads(int num_threads);

/// y[M,N] = alpha·x[M,K]·W[N,K]ᵀ + beta·y.
static void matmul_nt(const float *x, int64_t M, const float *W, int64_t N, int64_t K, float alpha, float beta,
                      float *y) {
    if (K == 0) { // BLAS leaves y alone for K = 0 only when beta = 1
        if (beta == 0.0f) memset(y, 0, (size_t)(M * N) * sizeof(float));
        return;
    }
    if (M == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)N, (int)K, alpha, W, (int)K, x, 1, beta, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, alpha, x, (int)K, W, (int)K,
                    beta, y, (int)N);
}

void cq_matmul_nt(const float *x, int64_t M, const float *W, int64_t N, int64_t K, float *y, int threads) {
    if (M <= 0 || N <= 0) return;
    openblas_set_num_threads(threads < 1 ? 1 : threads);
    matmul_nt(x, M, W, N, K, 1.0f, 0.0f, y);
}

size_t cq_dense_linear_scratch_bytes(int64_t M, int64_t N, int32_t r) {
    (void)N;
    return M > 0 && r > 0 ? cq_align64((size_t)(M * r) * sizeof(float)) : 0;
}

void cq_dense_linear(const float *x, int64_t M, const float *W, int64_t N, int64_t K,
                     const float *A, const float *B, int32_t r, float scaling,
                     const float *bias, float *y, void *scratch, int threads) {
    if (M <= 0 || N <= 0) return;
    openblas_set_num_threads(threads < 1 ? 1 : threads);
    matmul_nt(x, M, W, N, K, 1.0f, 0.0f, y);
    if (r > 0 && A && B) {
        float *xa = (float *)scratch;
        matmul_nt(x, M, A, r, K, 1.0f, 0.0f, xa);
        matmul_nt(xa, M, B, N, r, scaling, 1.0f, y);
    }
    if (bias)
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) y[m * N + n] += bias[n];
}
