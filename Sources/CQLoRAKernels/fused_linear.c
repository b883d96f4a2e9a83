// cq_fused_linear: the on-the-fly QLoRA linear. Computes the LoRA down-projection xa = x·Aᵀ once,
// then hands off to the small-M GEMV path (gemv.c, reads nibbles directly) or the panel GEMM path
// (panel_gemm.c, decodes L2-sized weight panels into per-thread scratch).
#include "kernels_internal.h"

typedef struct {
    const float *x, *A;
    float *xa;
    int64_t K;
    int32_t r;
    cq_dot_fn dot;
} lora_down_args;

static void lora_down_range(void *p, int64_t i0, int64_t i1) {
    const lora_down_args *a = (const lora_down_args *)p;
    for (int64_t i = i0; i < i1; i++) a->xa[i] = a->dot(a->x + (i / a->r) * a->K, a->A + (i % a->r) * a->K, a->K);
}

void cq_lora_down(const float *x, int64_t M, int64_t K, const float *A, int32_t r, float *xa, int threads) {
    lora_down_args args = {x, A, xa, K, r, cq_gemm_isa_current().dot};
    const int64_t n = M * r;
    cq_parallel_for(n, n * K > 65536 ? threads : 1, lora_down_range, &args);
}

size_t cq_fused_linear_scratch_bytes(int64_t M, int64_t N, int64_t K, int32_t r, int threads) {
    (void)N;
    if (M <= 0) return 0;
    if (threads < 1) threads = 1;
    if (r < 0) r = 0;
    const size_t xa = cq_align64((size_t)(M * r) * sizeof(float));
    return xa + (M < CQ_GEMV_MAX_M ? cq_gemv_scratch_bytes(M, K, threads)
                                   : cq_panel_gemm_scratch_bytes(M, K, r, threads));
}

// given_xa: x·Aᵀ computed by the caller (training keeps it for the backward), else NULL: it is
// computed from A into the start of scratch.
static int fused_linear(const float *x, int64_t M, const cq_qweight *w, const float *A, const float *B, int32_t r,
                        float scaling, const float *bias, float *y, const float *given_xa, void *scratch, int threads, int bf16) {
    if (M <= 0 || w->rows <= 0) return 0;
    if (threads < 1) threads = 1;
    if (r < 0 || (A == NULL && given_xa == NULL) || B == NULL) r = 0;
    float *xa = given_xa ? (float *)given_xa : (float *)scratch;
    void *rest = (char *)scratch + cq_align64((size_t)(M * r) * sizeof(float));
    const int small = M < CQ_GEMV_MAX_M;
    // bf16 (AVX512-BF16 only). Panel GEMM (M >= 64): x, the decoded weight and the LoRA block in
    // bf16. Small M: the bf16 nibble-streaming tiles (K a multiple of the block, blocks of >= 64);
    // LoRA and bias in f32.
    const int use_bf16 = bf16 && cq_bf16_isa_current() &&
                         (small ? cq_gemv_bf16_supported(w) : w->cols + r >= 2);
    if (r > 0 && !given_xa) cq_lora_down(x, M, w->cols, A, r, xa, threads);
    if (use_bf16) {
        if (small)
            cq_fused_gemv_ex(x, M, w, xa, B, r, scaling, bias, y, rest, threads, 1);
        else
            cq_panel_gemm_bf16(x, M, w, xa, B, r, scaling, bias, y, rest, threads);
    } else if (small) {
        cq_fused_gemv(x, M, w, xa, B, r, scaling, bias, y, rest, threads);
    } else {
        cq_panel_gemm(x, M, w->rows, w->cols, w, NULL, xa, B, r, scaling, bias, y, rest, threads);
    }
    return use_bf16;
}

void cq_fused_linear(const float *x, int64_t M, const cq_qweight *w,
                     const float *A, const float *B, int32_t r, float scaling,
                     const float *bias, float *y, void *scratch, int threads) {
    fused_linear(x, M, w, A, B, r, scaling, bias, y, NULL, scratch, threads, 0);
}

int cq_fused_linear_ex(const float *x, int64_t M, const cq_qweight *w,
                       const float *A, const float *B, int32_t r, float scaling,
                       const float *bias, float *y, void *scratch, int threads, int bf16) {
    return fused_linear(x, M, w, A, B, r, scaling, bias, y, NULL, scratch, threads, bf16);
}

int cq_fused_linear_given_xa(const float *x, int64_t M, const cq_qweight *w,
                             const float *xa, const float *B, int32_t r, float scaling,
                             const float *bias, float *y, void *scratch, int threads, int bf16) {
    return fused_linear(x, M, w, NULL, B, r, scaling, bias, y, xa, scratch, threads, bf16);
}
