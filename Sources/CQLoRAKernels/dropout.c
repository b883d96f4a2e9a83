// Inverted dropout with a counter-based mask: whether element i is kept depends only on
// (seed, stream, step, i), never on which thread computes it or in what order, so the mask is the
// same for any thread count, and the backward recomputes it instead of storing it.
#include "kernels_internal.h"

/// SplitMix64's finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mix.
static inline uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t cq_dropout_key(uint64_t seed, uint64_t stream, uint64_t step) { return mix64(mix64(mix64(seed) ^ stream) ^ step); }

int cq_dropout_keeps(uint64_t key, int64_t i, float p) {
    const uint64_t bits = mix64(key ^ (uint64_t)i);
    const float u = (float)(bits >> 40) * (1.0f / 16777216.0f);   // top 24 bits: uniform in [0, 1)
    return u >= p;
}

typedef struct {
    const float *x;
    float *out;
    uint64_t key;
    float p, scale;
} dropout_args;

static void dropout_range(void *q, int64_t i0, int64_t i1) {
    const dropout_args *a = (const dropout_args *)q;
    for (int64_t i = i0; i < i1; i++) a->out[i] = cq_dropout_keeps(a->key, i, a->p) ? a->x[i] * a->scale : 0.0f;
}

void cq_dropout(const float *x, float *out, int64_t n, uint64_t key, float p, float scale, int threads) {
    dropout_args a = {.x = x, .out = out, .key = key, .p = p, .scale = scale};
    cq_parallel_for(n, n > 32768 ? threads : 1, dropout_range, &a);
}
