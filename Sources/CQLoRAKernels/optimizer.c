// Optimizer steps over a flat parameter buffer, elementwise (split over element ranges, so the
// thread count never changes a bit).
#include "kernels_internal.h"
#include <math.h>

typedef struct {
    float *p, *m, *v;
    const float *g;
    float lr, b1, b2, eps, wd, momentum;
    float step_size, bc2_sqrt;
} opt_args;

static int team(int64_t n, int threads) { return n > 32768 ? threads : 1; }

/// buf = momentum·buf + g; p −= lr·buf (momentum 0: p −= lr·g exactly, buf untouched).
static void sgd_range(void *q, int64_t i0, int64_t i1) {
    const opt_args *a = (const opt_args *)q;
    if (a->momentum == 0.0f || !a->m) {
        for (int64_t i = i0; i < i1; i++) a->p[i] -= a->lr * a->g[i];
        return;
    }
    for (int64_t i = i0; i < i1; i++) {
        const float b = a->momentum * a->m[i] + a->g[i];
        a->m[i] = b;
        a->p[i] -= a->lr * b;
    }
}

void cq_sgd_step(float *p, const float *g, float *buf, int64_t n, float lr, float momentum, int threads) {
    opt_args a = {.p = p, .g = g, .m = buf, .lr = lr, .momentum = momentum};
    cq_parallel_for(n, team(n, threads), sgd_range, &a);
}

/// torch.optim.AdamW (single-tensor path): p·= 1 − lr·wd; m = lerp(m, g, 1−β1);
/// v = β2·v + (1−β2)·g²; p −= (lr / (1−β1ᵗ))·m / (√v / √(1−β2ᵗ) + eps).
static void adamw_range(void *q, int64_t i0, int64_t i1) {
    const opt_args *a = (const opt_args *)q;
    const float decay = 1.0f - a->lr * a->wd;
    for (int64_t i = i0; i < i1; i++) {
        const float g = a->g[i];
        float p = a->p[i] * decay;
        const float m = a->m[i] + (1.0f - a->b1) * (g - a->m[i]);
        const float v = a->v[i] * a->b2 + (1.0f - a->b2) * g * g;
        a->m[i] = m;
        a->v[i] = v;
        const float denom = sqrtf(v) / a->bc2_sqrt + a->eps;
        p -= a->step_size * (m / denom);
        a->p[i] = p;
    }
}

void cq_adamw_step(float *p, const float *g, float *m, float *v, float *step, int64_t n, float lr, float beta1, float beta2,
                   float eps, float weight_decay, int threads) {
    const float t = step[0] + 1.0f;
    step[0] = t;
    const double bc1 = 1.0 - pow((double)beta1, (double)t), bc2 = 1.0 - pow((double)beta2, (double)t);
    opt_args a = {.p = p, .g = g, .m = m, .v = v, .lr = lr, .b1 = beta1, .b2 = beta2, .eps = eps, .wd = weight_decay,
                  .step_size = (float)((double)lr / bc1), .bc2_sqrt = (float)sqrt(bc2)};
    cq_parallel_for(n, team(n, threads), adamw_range, &a);
}
