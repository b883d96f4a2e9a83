// Backward-pass kernels: reductions, activation derivatives, softmax, RMSNorm, embedding
// scatter-add, and the mean-squared-error loss (the matmul variants reverse mode needs — dY·W
// through a 4-bit weight decoded on the fly, dense dY·W, dYᵀ·X — are in gemm_kn.c). Every kernel splits its work over
// independent outputs and reduces in a fixed order, so results are bitwise identical for any
// thread count.
#include "kernels_internal.h"
#include "pointwise_internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const float *a, *b, *c;
    const void *w;
    const int32_t *ids;
    float *out;
    int64_t m, n, k;
    float s;
    int kind;
} bw_args;

#define BW_SERIAL_MAX 32768
static int team(int64_t work, int threads) { return work > BW_SERIAL_MAX ? threads : 1; }

// ---- column sums: x [rows, n] → [n], rows added in order; columns over threads.
static void sum_rows_range(void *p, int64_t c0, int64_t c1) {
    const bw_args *e = (const bw_args *)p;
    for (int64_t j = c0; j < c1; j++) {
        float s = 0.0f;
        for (int64_t i = 0; i < e->m; i++) s += e->a[i * e->n + j];
        e->out[j] = s;
    }
}

void cq_sum_rows(const float *x, int64_t rows, int64_t n, float *out, int threads) {
    bw_args a = {.a = x, .out = out, .m = rows, .n = n};
    cq_parallel_for(n, team(rows * n, threads), sum_rows_range, &a);
}

// ---- activation derivatives: out = dy · f'(x). kind 0 silu, 1 gelu (erf form), 2 relu.
static void act_grad_range(void *p, int64_t i0, int64_t i1) {
    const bw_args *e = (const bw_args *)p;
    const float *x = e->a, *g = e->b;
    for (int64_t i = i0; i < i1; i++) {
        const float v = x[i];
        float d;
        if (e->kind == 1) {
            const float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
            const float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
            d = cdf + v * pdf;
        } else {
            d = v > 0.0f ? 1.0f : 0.0f;
        }
        e->out[i] = g[i] * d;
    }
}

void cq_activation_grad(int kind, const float *x, const float *dy, float *out, int64_t n, int threads) {
    if (kind == 0) {  // silu: the vectorized exp of the per-ISA pointwise kernels
        cq_pw_args args = {.a = x, .b = dy, .out = out};
        cq_parallel_for(n, team(n, threads), cq_pw_kernels_current().silu_grad, &args);
        return;
    }
    bw_args a = {.a = x, .b = dy, .out = out, .kind = kind};
    cq_parallel_for(n, team(n, threads), act_grad_range, &a);
}

// ---- the SwiGLU gate's backward (the per-ISA pointwise map): dx = (dy·u)·silu'(x), du = dy·silu(x).
void cq_silu_mul_grad(const float *x, const float *u, const float *dy, float *dx, float *du, int64_t n, int threads) {
    cq_pw_args args = {.a = x, .b = u, .c = dy, .out = dx, .out2 = du};
    cq_parallel_for(n, team(n, threads), cq_pw_kernels_current().silu_mul_grad, &args);
}

// ---- softmax backward: dx = y·(dy − Σ dy·y + dlse) per row (dlse: the log-sum-exp's cotangent, or none).
static void softmax_grad_range(void *p, int64_t r0, int64_t r1) {
    const bw_args *e = (const bw_args *)p;
    const int64_t n = e->n;
    for (int64_t i = r0; i < r1; i++) {
        const float *y = e->a + i * n, *g = e->b + i * n;
        double dot = 0.0;
        for (int64_t j = 0; j < n; j++) dot += (double)g[j] * (double)y[j];
        const float d = (float)dot - (e->c ? e->c[i] : 0.0f);
        for (int64_t j = 0; j < n; j++) e->out[i * n + j] = y[j] * (g[j] - d);
    }
}

void cq_softmax_grad(const float *y, const float *dy, const float *dlse, float *out, int64_t rows, int64_t n, int threads) {
    bw_args a = {.a = y, .b = dy, .c = dlse, .out = out, .m = rows, .n = n};
    cq_parallel_for(rows, team(rows * n, threads), softmax_grad_range, &a);
}

// ---- RMSNorm backward. inv = 1/sqrt(mean(x²) + eps) as the forward computes it.
static float rms_inv(const float *x, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t j = 0; j < n; j++) ss += (double)x[j] * (double)x[j];
    return 1.0f / sqrtf((float)(ss / (double)n) + eps);
}

/// dx = inv·(g·w) − x·inv³/n·Σ(g·w·x) per row.
static void rms_grad_x_range(void *p, int64_t r0, int64_t r1) {
    const bw_args *e = (const bw_args *)p;
    const int64_t n = e->n;
    for (int64_t i = r0; i < r1; i++) {
        const float *x = e->a + i * n, *g = e->c + i * n;
        const float inv = rms_inv(x, n, e->s);
        double dot = 0.0;
        for (int64_t j = 0; j < n; j++) dot += (double)g[j] * (double)e->b[j] * (double)x[j];
        const float coef = (float)(dot * (double)inv * (double)inv * (double)inv / (double)n);
        for (int64_t j = 0; j < n; j++) e->out[i * n + j] = inv * (g[j] * e->b[j]) - x[j] * coef;
    }
}

void cq_rmsnorm_grad_x(const float *x, const float *weight, const float *dy, float eps, float *dx, int64_t rows, int64_t n,
                       int threads) {
    bw_args a = {.a = x, .b = weight, .c = dy, .out = dx, .m = rows, .n = n, .s = eps};
    cq_parallel_for(rows, team(rows * n, threads), rms_grad_x_range, &a);
}

/// out = x·inv per row (the normalized input without the weight), for the weight's gradient.
static void rms_hat_range(void *p, int64_t r0, int64_t r1) {
    const bw_args *e = (const bw_args *)p;
    const int64_t n = e->n;
    for (int64_t i = r0; i < r1; i++) {
        const float *x = e->a + i * n;
        const float inv = rms_inv(x, n, e->s);
        for (int64_t j = 0; j < n; j++) e->out[i * n + j] = x[j] * inv;
    }
}

void cq_rmsnorm_hat(const float *x, float eps, float *out, int64_t rows, int64_t n, int threads) {
    bw_args a = {.a = x, .out = out, .m = rows, .n = n, .s = eps};
    cq_parallel_for(rows, team(rows * n, threads), rms_hat_range, &a);
}

// ---- embedding backward: table gradient [vocab, dim] = scatter-add of dy rows by id, ids in
// order; columns of the table over threads (each thread walks every id for its columns).
static void emb_grad_range(void *p, int64_t c0, int64_t c1) {
    const bw_args *e = (const bw_args *)p;
    const int64_t V = e->n, D = e->k;
    for (int64_t v = 0; v < V; v++) memset(e->out + v * D + c0, 0, (size_t)(c1 - c0) * sizeof(float));
    for (int64_t i = 0; i < e->m; i++) {
        const int32_t id = e->ids[i];
        if (id < 0 || id >= V) continue;
        for (int64_t j = c0; j < c1; j++) e->out[id * D + j] += e->a[i * D + j];
    }
}

void cq_embedding_grad(const int32_t *ids, int64_t count, const float *dy, int64_t vocab, int64_t dim, float *out, int threads) {
    bw_args a = {.a = dy, .ids = ids, .out = out, .m = count, .n = vocab, .k = dim};
    cq_parallel_for(dim, team(count * dim + vocab * dim, threads), emb_grad_range, &a);
}

// ---- mean squared error: mean((y − t)²) over n values, summed in order (double).
float cq_mse(const float *y, const float *t, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float d = y[i] - t[i];
        s += (double)d * (double)d;
    }
    return (float)(s / (double)n);
}

/// dy = (2/n)·(y − t)·g[0].
static void mse_grad_range(void *p, int64_t i0, int64_t i1) {
    const bw_args *e = (const bw_args *)p;
    const float f = e->s * e->c[0];
    for (int64_t i = i0; i < i1; i++) e->out[i] = f * (e->a[i] - e->b[i]);
}

void cq_mse_grad(const float *y, const float *t, const float *g, float *out, int64_t n, int threads) {
    bw_args a = {.a = y, .b = t, .c = g, .out = out, .s = 2.0f / (float)n};
    cq_parallel_for(n, team(n, threads), mse_grad_range, &a);
}

/// out[0..n) = value.
void cq_fill(float value, float *out, int64_t n) { for (int64_t i = 0; i < n; i++) out[i] = value; }

/// out = src (n floats).
void cq_copy(const float *src, float *out, int64_t n) { if (out != src) memmove(out, src, (size_t)n * sizeof(float)); }

// ---- cross-entropy over logits [rows, n] with int32 labels (torch's mean reduction, labels
// equal to -100 ignored). Each row's log-sum-exp comes from the per-ISA pointwise kernels
// (vectorized exp, double lane sums; rows over threads), the rows' losses are added in order.

/// Returns -1, or the first row whose label is outside 0..<n (and not -100).
int64_t cq_cross_entropy(const float *logits, const int32_t *labels, int64_t rows, int64_t n, float *loss, int threads) {
    int64_t counted = 0;
    for (int64_t i = 0; i < rows; i++) {
        if (labels[i] == -100) continue;
        if (labels[i] < 0 || labels[i] >= n) return i;
        counted++;
    }
    double *lse = (double *)malloc((size_t)(rows > 0 ? rows : 1) * sizeof(double));
    if (!lse) abort();  // out of memory: nothing sensible to return
    cq_pw_args a = {.a = logits, .row_lse = lse, .width = n};
    cq_parallel_for(rows, team(rows * n, threads), cq_pw_kernels_current().ce_lse, &a);
    double total = 0.0;
    for (int64_t i = 0; i < rows; i++)
        if (labels[i] != -100) total += lse[i] - (double)logits[i * n + labels[i]];
    free(lse);
    loss[0] = counted ? (float)(total / (double)counted) : 0.0f;
    return -1;
}

/// dlogits = (softmax(logits) − onehot(label))·g[0]/counted per row (zero for ignored rows).
void cq_cross_entropy_grad(const float *logits, const int32_t *labels, const float *g, float *out, int64_t rows, int64_t n, int threads) {
    int64_t counted = 0;
    for (int64_t i = 0; i < rows; i++) counted += labels[i] != -100;
    cq_pw_args a = {.a = logits, .labels = labels, .out = out, .width = n, .s = counted ? g[0] / (float)counted : 0.0f};
    cq_parallel_for(rows, team(rows * n, threads), cq_pw_kernels_current().ce_grad, &a);
}
