// Rotary position embedding in the half-split layout (transformers' rotate_half): for each head
// of width d and each i < d/2, the pair (x[i], x[i + d/2]) is rotated by angle = p·inv_freq[i]:
//   out[i]       = x[i]·cos − x[i + d/2]·sin
//   out[i + d/2] = x[i + d/2]·cos + x[i]·sin
// (`inverse` rotates by −angle: the transpose, i.e. the vector-Jacobian product.) cos/sin are
// float32 of the float32 angle, as transformers computes them. Each (batch, position) row is
// computed by one thread, so any thread count gives the same bits; out may alias x.
#include "kernels_internal.h"
#include <math.h>

typedef struct {
    const float *x;
    float *out;
    const float *inv_freq;
    const int32_t *positions;  // [rows] or NULL: offset + (row % seq)
    int64_t seq, heads, head_dim, offset;
    int inverse;
} rope_args;

static void rope_range(void *p, int64_t r0, int64_t r1) {
    const rope_args *a = (const rope_args *)p;
    const int64_t half = a->head_dim / 2, width = a->heads * a->head_dim;
    float cs[512], sn[512];
    for (int64_t r = r0; r < r1; r++) {
        const int64_t pos = a->positions ? (int64_t)a->positions[r] : a->offset + r % a->seq;
        for (int64_t i = 0; i < half; i++) {
            const float angle = (float)pos * a->inv_freq[i];
            cs[i] = cosf(angle);
            sn[i] = a->inverse ? -sinf(angle) : sinf(angle);
        }
        const float *x = a->x + r * width;
        float *y = a->out + r * width;
        for (int64_t h = 0; h < a->heads; h++) {
            const float *xh = x + h * a->head_dim;
            float *yh = y + h * a->head_dim;
            for (int64_t i = 0; i < half; i++) {
                const float x1 = xh[i], x2 = xh[i + half];
                // Separate statements: each product rounds before the sum, as torch's q·cos + rotate_half(q)·sin.
                const float a1 = x1 * cs[i], b1 = x2 * sn[i];
                const float a2 = x2 * cs[i], b2 = x1 * sn[i];
                yh[i] = a1 - b1;
                yh[i + half] = a2 + b2;
            }
        }
    }
}

void cq_rope(const float *x, float *out, int64_t rows, int64_t seq, int64_t heads, int64_t head_dim,
             const float *inv_freq, const int32_t *positions, int64_t offset, int inverse, int threads) {
    rope_args args = {x, out, inv_freq, positions, seq, heads, head_dim, offset, inverse};
    cq_parallel_for(rows, rows * heads * head_dim > 32768 ? threads : 1, rope_range, &args);
}
