// The pointwise kernels' body, compiled once per ISA: the including file defines PW_TARGET (a
// target attribute or nothing) and PW_NAME(x) (the ISA-suffixed symbol), then includes this
// file. Every loop is a plain map or a reduction into PW_LANES fixed lanes (lane l takes the
// elements j ≡ l mod PW_LANES, lanes are combined in a fixed tree), which the compiler turns
// into vectors of the target's width without changing the order of any operation. With
// contraction off, the bits are the same on every ISA and for every thread count.
#include "fast_exp.h"
#include <math.h>
#include <string.h>
#pragma clang fp contract(off)

#define PW_LANES 16
// An element map reads and writes index i only, so out may be one of its inputs (in-place steps):
// vectorizing is safe without the compiler's overlap checks (which would send out == in to a
// scalar loop).
#define PW_MAP _Pragma("clang loop vectorize(assume_safety)")

PW_TARGET void PW_NAME(exp)(void *p, int64_t i0, int64_t i1) {
    const cq_pw_args *e = (const cq_pw_args *)p;
    const float *a = e->a;   // out may be a (in-place steps)
    float *out = e->out;
    PW_MAP for (int64_t i = i0; i < i1; i++) out[i] = cq_fast_expf(a[i]);
}

PW_TARGET static inline float PW_NAME(silu1)(float v) { return v / (1.0f + cq_fast_expf(-v)); }

PW_TARGET void PW_NAME(silu)(void *p, int64_t i0, int64_t i1) {
    const cq_pw_args *e = (const cq_pw_args *)p;
    const float *a = e->a;   // out may be a (in-place steps)
    float *out = e->out;
    PW_MAP for (int64_t i = i0; i < i1; i++) out[i] = PW_NAME(silu1)(a[i]);
}

PW_TARGET void PW_NAME(silu_mul)(void *p, int64_t i0, int64_t i1) {
    const cq_pw_args *e = (const cq_pw_args *)p;
    const float *a = e->a, *b = e->b;   // out may be a or b (in-place steps)
    float *out = e->out;
    PW_MAP for (int64_t i = i0; i < i1; i++) out[i] = PW_NAME(silu1)(a[i]) * b[i];
}

// out = dy·silu'(x), silu'(x) = σ(x)·(1 + x·(1 − σ(x))).
PW_TARGET void PW_NAME(silu_grad)(void *p, int64_t i0, int64_t i1) {
    const cq_pw_args *e = (const cq_pw_args *)p;
    const float *x = e->a, *g = e->b;   // out may be g (the plan reuses dy in place)
    float *out = e->out;
    PW_MAP for (int64_t i = i0; i < i1; i++) {
        const float v = x[i], sg = 1.0f / (1.0f + cq_fast_expf(-v));
        out[i] = g[i] * (sg * (1.0f + v * (1.0f - sg)));
    }
}

// The SwiGLU gate's backward, h = silu(x)·u: dx = (g·u)·silu'(x), du = g·silu(x) — the
// arithmetic of the separate mul, silu_grad, silu and mul maps, element by element.
PW_TARGET void PW_NAME(silu_mul_grad)(void *p, int64_t i0, int64_t i1) {
    const cq_pw_args *e = (const cq_pw_args *)p;
    const float *x = e->a, *u = e->b, *g = e->c;
    float *dx = e->out, *du = e->out2;
    PW_MAP for (int64_t i = i0; i < i1; i++) {
        const float v = x[i], gi = g[i], ds = gi * u[i];
        const float sg = 1.0f / (1.0f + cq_fast_expf(-v));
        dx[i] = ds * (sg * (1.0f + v * (1.0f - sg)));
        du[i] = gi * PW_NAME(silu1)(v);
    }
}

// The row's maximum (exact: the order of a max does not matter).
PW_TARGET static inline float PW_NAME(row_max)(const float *restrict x, int64_t n) {
    float m[PW_LANES];
    for (int l = 0; l < PW_LANES; l++) m[l] = -INFINITY;
    int64_t j = 0;
    for (; j + PW_LANES <= n; j += PW_LANES)
        for (int l = 0; l < PW_LANES; l++) m[l] = x[j + l] > m[l] ? x[j + l] : m[l];
    for (int l = 0; j + l < n; l++) m[l] = x[j + l] > m[l] ? x[j + l] : m[l];
    float mx = m[0];
    for (int l = 1; l < PW_LANES; l++) mx = m[l] > mx ? m[l] : mx;
    return mx;
}

// Σ exp(x − mx) in double over fixed lanes (lane sums combined pairwise); with `e` the
// exponentials are also stored there.
PW_TARGET static inline double PW_NAME(row_sum_exp)(const float *restrict x, int64_t n, float mx, float *restrict e) {
    double acc[PW_LANES];
    float t[PW_LANES];
    for (int l = 0; l < PW_LANES; l++) acc[l] = 0.0;
    int64_t j = 0;
    for (; j + PW_LANES <= n; j += PW_LANES) {
        for (int l = 0; l < PW_LANES; l++) t[l] = cq_fast_expf(x[j + l] - mx);
        if (e) memcpy(e + j, t, sizeof t);
        for (int l = 0; l < PW_LANES; l++) acc[l] += (double)t[l];
    }
    for (int l = 0; j + l < n; l++) {
        const float v = cq_fast_expf(x[j + l] - mx);
        if (e) e[j + l] = v;
        acc[l] += (double)v;
    }
    for (int w = PW_LANES / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    return acc[0];
}

// row_lse[i] = log Σ_j exp(logits[i, j]) (in double around the float exponentials).
PW_TARGET void PW_NAME(ce_lse)(void *p, int64_t r0, int64_t r1) {
    const cq_pw_args *e = (const cq_pw_args *)p;
    const int64_t n = e->width;
    for (int64_t i = r0; i < r1; i++) {
        const float *x = e->a + i * n;
        const float mx = PW_NAME(row_max)(x, n);
        e->row_lse[i] = log(PW_NAME(row_sum_exp)(x, n, mx, NULL)) + (double)mx;
    }
}

// dlogits = (softmax(logits) − onehot(label))·s per row (zero for ignored rows): the
// exponentials are written once, then scaled in place (the row is still in cache).
PW_TARGET void PW_NAME(ce_grad)(void *p, int64_t r0, int64_t r1) {
    const cq_pw_args *e = (const cq_pw_args *)p;
    const int64_t n = e->width;
    for (int64_t i = r0; i < r1; i++) {
        const float *x = e->a + i * n;
        float *restrict o = e->out + i * n;
        const int32_t label = e->labels[i];
        if (label < 0 || label >= n) { memset(o, 0, (size_t)n * sizeof(float)); continue; }
        const float mx = PW_NAME(row_max)(x, n);
        const float k = (float)(1.0 / PW_NAME(row_sum_exp)(x, n, mx, o)) * e->s;
        for (int64_t j = 0; j < n; j++) o[j] *= k;
        o[label] -= e->s;
    }
}
