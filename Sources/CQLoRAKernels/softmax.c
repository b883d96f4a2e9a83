// Softmax over the last dimension. Each row is computed by one thread in a fixed order, so the
// result is bitwise identical for any thread count.
#include "cqlora.h"
#include <math.h>
#include <stddef.h>

static void softmax_rows(const float *x, float *out, float *lse, int64_t rows, int64_t n, int threads) {
    #pragma omp parallel for schedule(static) num_threads(threads) if(rows * n > 32768)
    for (int64_t i = 0; i < rows; i++) {
        const float *row = x + i * n;
        float *y = out + i * n;
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
        if (lse) lse[i] = (float)((double)max + log(sum));
    }
}

void cq_softmax(const float *x, float *out, int64_t rows, int64_t n, int threads) {
    softmax_rows(x, out, NULL, rows, n, threads);
}

void cq_softmax_lse(const float *x, float *out, float *lse, int64_t rows, int64_t n, int threads) {
    softmax_rows(x, out, lse, rows, n, threads);
}
