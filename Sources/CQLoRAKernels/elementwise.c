// Small elementwise kernels. Each output element depends on its inputs only, so splitting
// over threads never changes a bit. The compiler vectorises the plain loops.
#include "cqlora.h"
#include <math.h>

#define PAR_FOR(n, threads) _Pragma("omp parallel for schedule(static) num_threads(threads) if((n) > 32768)")

void cq_add(const float *a, const float *b, float *out, int64_t n, int threads) {
    PAR_FOR(n, threads)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void cq_mul(const float *a, const float *b, float *out, int64_t n, int threads) {
    PAR_FOR(n, threads)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] * b[i];
}

void cq_add_row(const float *a, const float *row, float *out, int64_t rows, int64_t n, int threads) {
    PAR_FOR(rows * n, threads)
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < n; j++) out[i * n + j] = a[i * n + j] + row[j];
}

void cq_scale(const float *a, float s, float *out, int64_t n, int threads) {
    PAR_FOR(n, threads)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] * s;
}

static inline float silu1(float v) { return v / (1.0f + expf(-v)); }

void cq_silu(const float *a, float *out, int64_t n, int threads) {
    PAR_FOR(n, threads)
    for (int64_t i = 0; i < n; i++) out[i] = silu1(a[i]);
}

void cq_silu_mul(const float *a, const float *b, float *out, int64_t n, int threads) {
    PAR_FOR(n, threads)
    for (int64_t i = 0; i < n; i++) out[i] = silu1(a[i]) * b[i];
}

void cq_gelu(const float *a, float *out, int64_t n, int threads) {
    PAR_FOR(n, threads)
    for (int64_t i = 0; i < n; i++) out[i] = 0.5f * a[i] * (1.0f + erff(a[i] * 0.70710678118654752f));
}

void cq_relu(const float *a, float *out, int64_t n, int threads) {
    PAR_FOR(n, threads)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] > 0.0f ? a[i] : 0.0f;
}

void cq_rmsnorm(const float *a, const float *weight, float eps, float *out, int64_t rows, int64_t n, int threads) {
    PAR_FOR(rows * n, threads)
    for (int64_t i = 0; i < rows; i++) {
        const float *x = a + i * n;
        double ss = 0.0; // fixed order per row: thread-count independent
        for (int64_t j = 0; j < n; j++) ss += (double)x[j] * (double)x[j];
        float inv = 1.0f / sqrtf((float)(ss / (double)n) + eps);
        for (int64_t j = 0; j < n; j++) out[i * n + j] = (x[j] * inv) * weight[j];
    }
}
