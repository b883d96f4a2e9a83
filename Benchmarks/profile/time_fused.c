// Times cq_fused_linear on 4096x11008 NF4+DQ (Benchmarks/profile/o2_vs_o3.sh): best of REPS runs of CALLS calls.
// Usage: time_fused M THREADS CALLS REPS  -> ms per call
#include "cqlora.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
    int64_t N = 11008, K = 4096; int r = 16;
    int M = atoi(argv[1]), th = atoi(argv[2]), calls = atoi(argv[3]), reps = atoi(argv[4]);
    float *W = malloc(N * K * 4); srand(1); for (int64_t i = 0; i < N * K; i++) W[i] = rand() / (float)RAND_MAX - 0.5f;
    int64_t nb = N * K / 64; uint8_t *packed = aligned_alloc(64, N * K / 2); float *absmax = malloc(nb * 4); int64_t bad;
    cq_quantize_4bit(W, N * K, 64, CQ_NF4, packed, absmax, &bad, 1);
    float code2[256]; uint8_t *q = malloc(nb); float *a2 = malloc((nb / 256 + 1) * 4); float off;
    cq_double_quantize(absmax, nb, 256, code2, q, a2, &off);
    cq_qweight w = {packed, N, K, 64, cq_codebook(CQ_NF4), NULL, q, code2, a2, off, 256};
    float *A = calloc(r * K, 4), *B = calloc(N * r, 4), *x = malloc((size_t)M * K * 4), *y = malloc((size_t)M * N * 4);
    for (int64_t i = 0; i < (int64_t)M * K; i++) x[i] = rand() / (float)RAND_MAX - 0.5f;
    void *s = aligned_alloc(64, (cq_fused_linear_scratch_bytes(M, N, K, r, th) + 127) / 64 * 64);
    double best = 1e9;
    for (int rep = 0; rep < reps; rep++) {
        double t0 = now();
        for (int c = 0; c < calls; c++) cq_fused_linear(x, M, &w, A, B, r, 0.5f, NULL, y, s, th);
        double t = (now() - t0) / calls; if (t < best) best = t;
    }
    printf("%.4f\n", best * 1e3);
    return 0;
}
