// Softmax over the last dimension. Each row is computed by one thread in a fixed order, so the
// result is bitwise identical for any thread count.
#include "kernels_internal.h"
#include <math.h>

typedef struct {
    const float *x;
    float *out, *lse;   // lse may be NULL
    int64_t n;
} softmax_args;

static void softmax_range(void *p, int64_t r0, int64_t r1) {
    const softmax_args *s = (const softmax_args *)p;
    const int64_t n = s->n;
    for (int64_t i = r0; i < r1; i++) {
        const float *row = s->x + i * n;
        float *y = s->out + i * n;
        // Subtracting the row's maximum keeps every exponent <= 0: no overflow for large logits.
        float max = row[0];
        for (int64_t j = 1; j < n; j++) max = row[j] > max ? row[j] : max;
        double sum = 0.0;
        for (int64_t j = 0; j < n; j++) {
            y[j] = expf(row[j] - max);
            sum += (double)y[j];
        }
        const float inv = (float)(1.0 / sum);
        for (int64_t j = 0; j < n; j++) y[j] *= inv;
        if (s->lse) s->lse[i] = (float)((double)max + log(sum));
    }
}

static void softmax_rows(const float *x, float *out, float *lse, int64_t rows, int64_t n, int threads) {
    softmax_args args = {x, out, lse, n};
    cq_parallel_for(rows, rows * n > 32768 ? threads : 1, softmax_range, &args);
}

void cq_softmax(const float *x, float *out, int64_t rows, int64_t n, int threads) {
    softmax_rows(x, out, NULL, rows, n, threads);
}

void cq_softmax_lse(const float *x, float *out, float *lse, int64_t rows, int64_t n, int threads) {
    softmax_rows(x, out, lse, rows, n, threads);
}
