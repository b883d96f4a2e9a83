// Portable micro-kernel (plain C, vectorised by the compiler for baseline SSE2): 16 x rows x
// 4 weight rows, same layout contract as the SIMD kernels.
#include "kernels_internal.h"

enum { MR = CQ_MRP_PORTABLE, NR = CQ_NR_PORTABLE };

void cq_gemm_kernel_portable(const void *xv, const void *wv, int64_t ldw, int64_t kc, float *ct, int64_t ldc) {
    const float *xp = (const float *)xv, *wp = (const float *)wv;
    float c[NR][MR] = {{0}};
    for (int64_t k = 0; k < kc; k++) {
        const float *a = xp + k * MR;
        CQ_UNROLL for (int j = 0; j < NR; j++) {
            const float b = wp[j * ldw + k];
            for (int i = 0; i < MR; i++) c[j][i] += a[i] * b;
        }
    }
    CQ_UNROLL for (int j = 0; j < NR; j++)
        for (int i = 0; i < MR; i++) ct[j * ldc + i] += c[j][i];
}
