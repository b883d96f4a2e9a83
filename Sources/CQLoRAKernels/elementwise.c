// Small elementwise kernels. Each output element depends on its inputs only, so splitting
// over threads never changes a bit. The compiler vectorises the plain loops.
#include "kernels_internal.h"
#include "pointwise_internal.h"
#include <math.h>
#include <string.h>

/// Operands of one elementwise call; each kernel's range function reads the fields it needs.
typedef struct {
    const float *a, *b;
    float *out;
    float s;       // scale factor, or RMSNorm epsilon
    int64_t width; // row length for the row-wise kernels
} ew_args;

/// Below this many elements a call runs on the calling thread.
#define EW_SERIAL_MAX 32768

static void run(int64_t n, int64_t elements, int threads, cq_range_fn fn, ew_args args) {
    cq_parallel_for(n, elements > EW_SERIAL_MAX ? threads : 1, fn, &args);
}

#define EW_RANGE(name, expr)                                                   \
    static void name(void *p, int64_t i0, int64_t i1) {                        \
        const ew_args *e = (const ew_args *)p;                                 \
        const float *a = e->a, *b = e->b;                                      \
        float *out = e->out;                                                   \
        const float s = e->s;                                                  \
        (void)b; (void)s;                                                      \
        for (int64_t i = i0; i < i1; i++) out[i] = (expr);                     \
    }

EW_RANGE(add_range, a[i] + b[i])
EW_RANGE(mul_range, a[i] * b[i])
EW_RANGE(scale_range, a[i] * s)
EW_RANGE(gelu_range, 0.5f * a[i] * (1.0f + erff(a[i] * 0.70710678118654752f)))
EW_RANGE(relu_range, a[i] > 0.0f ? a[i] : 0.0f)

void cq_add(const float *a, const float *b, float *out, int64_t n, int threads) {
    run(n, n, threads, add_range, (ew_args){a, b, out, 0, 0});
}

void cq_mul(const float *a, const float *b, float *out, int64_t n, int threads) {
    run(n, n, threads, mul_range, (ew_args){a, b, out, 0, 0});
}

void cq_scale(const float *a, float s, float *out, int64_t n, int threads) {
    run(n, n, threads, scale_range, (ew_args){a, NULL, out, s, 0});
}

// exp, SiLU and the SwiGLU gate run the vectorized exp of the per-ISA pointwise kernels
// (fast_exp.h: within 1 ulp of libm expf, the same bits on every ISA).
void cq_exp(const float *a, float *out, int64_t n, int threads) {
    cq_pw_args args = {.a = a, .out = out};
    cq_parallel_for(n, n > EW_SERIAL_MAX ? threads : 1, cq_pw_kernels_current().exp, &args);
}

void cq_silu(const float *a, float *out, int64_t n, int threads) {
    cq_pw_args args = {.a = a, .out = out};
    cq_parallel_for(n, n > EW_SERIAL_MAX ? threads : 1, cq_pw_kernels_current().silu, &args);
}

void cq_silu_mul(const float *a, const float *b, float *out, int64_t n, int threads) {
    cq_pw_args args = {.a = a, .b = b, .out = out};
    cq_parallel_for(n, n > EW_SERIAL_MAX ? threads : 1, cq_pw_kernels_current().silu_mul, &args);
}

void cq_gelu(const float *a, float *out, int64_t n, int threads) {
    run(n, n, threads, gelu_range, (ew_args){a, NULL, out, 0, 0});
}

void cq_relu(const float *a, float *out, int64_t n, int threads) {
    run(n, n, threads, relu_range, (ew_args){a, NULL, out, 0, 0});
}

/// Rows [r0, r1) of a + row (b is the row broadcast over the rows).
static void add_row_range(void *p, int64_t r0, int64_t r1) {
    const ew_args *e = (const ew_args *)p;
    const int64_t n = e->width;
    for (int64_t i = r0; i < r1; i++)
        for (int64_t j = 0; j < n; j++) e->out[i * n + j] = e->a[i * n + j] + e->b[j];
}

void cq_add_row(const float *a, const float *row, float *out, int64_t rows, int64_t n, int threads) {
    run(rows, rows * n, threads, add_row_range, (ew_args){a, row, out, 0, n});
}

/// Chunks of ((x0 + x1) + x2) + ...: every operand's chunk is read before the output's is
/// written, so out may be any operand (in-place steps).
typedef struct {
    const float *const *xs;
    int count;
    float *out;
} chain_args;

#define CHAIN_CHUNK 256

static void add_chain_range(void *p, int64_t i0, int64_t i1) {
    const chain_args *c = (const chain_args *)p;
    float acc[CHAIN_CHUNK];
    for (int64_t b = i0; b < i1; b += CHAIN_CHUNK) {
        const int64_t len = i1 - b < CHAIN_CHUNK ? i1 - b : CHAIN_CHUNK;
        const float *x0 = c->xs[0] + b, *x1 = c->xs[1] + b;
        for (int64_t i = 0; i < len; i++) acc[i] = x0[i] + x1[i];
        for (int j = 2; j < c->count; j++) {
            const float *xj = c->xs[j] + b;
            for (int64_t i = 0; i < len; i++) acc[i] += xj[i];
        }
        memcpy(c->out + b, acc, (size_t)len * sizeof(float));
    }
}

void cq_add_chain(const float *const *xs, int count, float *out, int64_t n, int threads) {
    if (count < 2 || n <= 0) return;
    chain_args args = {xs, count, out};
    cq_parallel_for(n, n > EW_SERIAL_MAX ? threads : 1, add_chain_range, &args);
}

static void rmsnorm_range(void *p, int64_t r0, int64_t r1) {
    const ew_args *e = (const ew_args *)p;
    const int64_t n = e->width;
    for (int64_t i = r0; i < r1; i++) {
        const float *x = e->a + i * n;
        double ss = 0.0; // fixed order per row: thread-count independent
        for (int64_t j = 0; j < n; j++) ss += (double)x[j] * (double)x[j];
        const float inv = 1.0f / sqrtf((float)(ss / (double)n) + e->s);
        for (int64_t j = 0; j < n; j++) e->out[i * n + j] = (x[j] * inv) * e->b[j];
    }
}

void cq_rmsnorm(const float *a, const float *weight, float eps, float *out, int64_t rows, int64_t n, int threads) {
    run(rows, rows * n, threads, rmsnorm_range, (ew_args){a, weight, out, eps, n});
}
