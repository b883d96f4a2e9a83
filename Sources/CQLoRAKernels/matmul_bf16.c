// The entry points of cqlora_bf16.h: each checks that the bf16 kernels may run here, else
// returns 0 so the caller runs f32 (the portable build never references an AVX-512 symbol).
#include "kernels_internal.h"
#include "cqlora_bf16.h"

int cq_bf16_available(void) { return cq_bf16_isa_current() != NULL; }

int cq_matmul_nn_q4_bf16(const float *dy, int64_t M, const cq_qweight *w, float *dx, int threads) {
#if CQ_X86
    if (!cq_bf16_isa_current()) return 0;
    cq_matmul_nn_bf16_avx512(dy, M, w, NULL, w->rows, w->cols, dx, threads < 1 ? 1 : threads);
    return 1;
#else
    (void)dy; (void)M; (void)w; (void)dx; (void)threads;
    return 0;
#endif
}

int cq_matmul_nn_bf16(const float *dy, int64_t M, const float *w, int64_t N, int64_t K, float *dx, int threads) {
#if CQ_X86
    if (!cq_bf16_isa_current()) return 0;
    cq_matmul_nn_bf16_avx512(dy, M, NULL, w, N, K, dx, threads < 1 ? 1 : threads);
    return 1;
#else
    (void)dy; (void)M; (void)w; (void)N; (void)K; (void)dx; (void)threads;
    return 0;
#endif
}

int cq_matmul_nt_bf16(const float *x, int64_t M, const float *w, int64_t N, int64_t K, float *y, void *scratch, int threads) {
    if (!cq_bf16_isa_current() || M < CQ_BF16_NT_MIN_M || N <= 0 || K <= 0 || !scratch) return 0;
    cq_panel_gemm_bf16_dense(x, M, N, K, w, y, scratch, threads < 1 ? 1 : threads);
    return 1;
}
