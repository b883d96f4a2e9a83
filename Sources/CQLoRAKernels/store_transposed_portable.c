// Portable transposed store of a GEMM accumulator tile (the panel and backward GEMMs'
// epilogue; the AVX-512 one transposes 16 x 16 blocks in registers with the same additions).
#include "kernels_internal.h"

void cq_store_transposed_portable(const float *ct, int64_t ldc, const float *bias, int64_t nj, int64_t nm, float *y,
                                  int64_t ldy) {
    for (int64_t m = 0; m < nm; m++)
        for (int64_t j = 0; j < nj; j++) y[m * ldy + j] = bias ? ct[j * ldc + m] + bias[j] : ct[j * ldc + m];
}
