// One M=1 call of cq_fused_linear on 4096x11008 NF4+DQ (1 thread), for Benchmarks/profile/run_callgrind.sh.
#include "cqlora.h"
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    int64_t N = 11008, K = 4096; int r = 16; int calls = argc > 1 ? atoi(argv[1]) : 1;
    float *W = malloc(N * K * 4); srand(1); for (int64_t i = 0; i < N * K; i++) W[i] = rand() / (float)RAND_MAX - 0.5f;
    int64_t nb = N * K / 64; uint8_t *packed = aligned_alloc(64, N * K / 2); float *absmax = malloc(nb * 4); int64_t bad;
    cq_quantize_4bit(W, N * K, 64, CQ_NF4, packed, absmax, &bad, 1);
    float code2[256]; uint8_t *q = malloc(nb); float *a2 = malloc((nb / 256 + 1) * 4); float off;
    cq_double_quantize(absmax, nb, 256, code2, q, a2, &off);
    cq_qweight w = {packed, N, K, 64, cq_codebook(CQ_NF4), NULL, q, code2, a2, off, 256};
    float *A = calloc(r * K, 4), *B = calloc(N * r, 4), *x = malloc(K * 4), *y = malloc(N * 4);
    for (int i = 0; i < K; i++) x[i] = rand() / (float)RAND_MAX - 0.5f;
    void *s = aligned_alloc(64, cq_fused_linear_scratch_bytes(1, N, K, r, 1) + 64);
    for (int c = 0; c < calls; c++) cq_fused_linear(x, 1, &w, A, B, r, 0.5f, NULL, y, s, 1);
    printf("%g\n", y[0]);
    return 0;
}
