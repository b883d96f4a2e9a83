// Portable micro-kernel of the backward GEMM (gemm_kn.c): 16 lanes x 4, plain C (the compiler
// vectorises it for baseline SSE2), both operands packed k-major.
#include "kernels_internal.h"

enum { MR = CQ_MRP_PORTABLE, NR = CQ_NR_PORTABLE };

void cq_kn_kernel_portable(const float *xp, int64_t ldx, const float *wp, int64_t ldw, int64_t kc, float *ct, int64_t ldc) {
    float c[NR][MR] = {{0}};
    for (int64_t k = 0; k < kc; k++) {
        const float *a = xp + k * ldx, *b = wp + k * ldw;
        CQ_UNROLL for (int j = 0; j < NR; j++)
            for (int i = 0; i < MR; i++) c[j][i] += a[i] * b[j];
    }
    CQ_UNROLL for (int j = 0; j < NR; j++)
        for (int i = 0; i < MR; i++) ct[j * ldc + i] += c[j][i];
}
