// Optimizer steps over a flat parameter buffer, elementwise (split over element ranges, so the
// thread count never changes a bit). Hyperparameters arrive as doubles, as torch's python scalars
// do; each coefficient is computed in double and rounded to float32 where it meets a tensor,
// which is what makes one step match torch's to the last bit or two.
#include "kernels_internal.h"
#include <math.h>

typedef struct {
    float *p, *m, *v;
    const float *g;
    float grad_scale;      // clip coefficient (1: g unchanged)
    float neg_lr, decay, w1, b2, w2, eps, momentum;
    float step_size, bc2_sqrt;
    int has_decay;
} opt_args;

static int team(int64_t n, int threads) { return n > 32768 ? threads : 1; }

/// torch.optim.SGD (no dampening, no weight decay): buf = momentum·buf + g; p += (−lr)·buf
/// (momentum 0: p += (−lr)·g exactly, buf untouched). g is first multiplied by grad_scale, as
/// clip_grad_norm_ does to the gradient in place.
static void sgd_range(void *q, int64_t i0, int64_t i1) {
    const opt_args *a = (const opt_args *)q;
    if (a->momentum == 0.0f || !a->m) {
        for (int64_t i = i0; i < i1; i++) {
            const float g = a->g[i] * a->grad_scale;
            const float step = a->neg_lr * g;
            a->p[i] += step;
        }
        return;
    }
    for (int64_t i = i0; i < i1; i++) {
        const float g = a->g[i] * a->grad_scale;
        const float mb = a->momentum * a->m[i];
        const float b = mb + g;
        a->m[i] = b;
        const float step = a->neg_lr * b;
        a->p[i] += step;
    }
}

void cq_sgd_step(float *p, const float *g, float *buf, int64_t n, double lr, double momentum, float grad_scale, int threads) {
    opt_args a = {.p = p, .g = g, .m = buf, .grad_scale = grad_scale, .neg_lr = (float)(-lr), .momentum = (float)momentum};
    cq_parallel_for(n, team(n, threads), sgd_range, &a);
}

/// torch.optim.AdamW, single-tensor path (torch/optim/adamw.py → adam.py `_single_tensor_adam`):
///   param.mul_(1 − lr·wd)                       (skipped when wd = 0)
///   exp_avg.lerp_(grad, 1 − β1)                 (weight < 0.5: m + w·(g − m))
///   exp_avg_sq.mul_(β2).addcmul_(grad, grad, value = 1 − β2)
///   denom = (exp_avg_sq.sqrt() / sqrt(1 − β2ᵗ)).add_(eps)
///   param.addcdiv_(exp_avg, denom, value = −lr / (1 − β1ᵗ))
/// One statement per tensor op, so no multiply-add is contracted across torch's roundings.
static void adamw_range(void *q, int64_t i0, int64_t i1) {
    const opt_args *a = (const opt_args *)q;
    for (int64_t i = i0; i < i1; i++) {
        const float g = a->g[i] * a->grad_scale;
        float p = a->p[i];
        if (a->has_decay) p = p * a->decay;
        const float diff = g - a->m[i];
        const float wdiff = a->w1 * diff;
        const float m = a->m[i] + wdiff;
        const float vb = a->v[i] * a->b2;
        const float wg = a->w2 * g;
        const float wgg = wg * g;
        const float v = vb + wgg;
        a->m[i] = m;
        a->v[i] = v;
        const float root = sqrtf(v);
        const float scaled = root / a->bc2_sqrt;
        const float denom = scaled + a->eps;
        const float ratio = m / denom;
        const float step = -a->step_size * ratio;
        a->p[i] = p + step;
    }
}

void cq_adamw_step(float *p, const float *g, float *m, float *v, float *step, int64_t n, double lr, double beta1, double beta2,
                   double eps, double weight_decay, float grad_scale, int threads) {
    const float t = step[0] + 1.0f;
    step[0] = t;
    const double bc1 = 1.0 - pow(beta1, (double)t), bc2 = 1.0 - pow(beta2, (double)t);
    opt_args a = {.p = p, .g = g, .m = m, .v = v, .grad_scale = grad_scale,
                  .decay = (float)(1.0 - lr * weight_decay), .has_decay = weight_decay != 0.0,
                  .w1 = (float)(1.0 - beta1), .b2 = (float)beta2, .w2 = (float)(1.0 - beta2), .eps = (float)eps,
                  .step_size = (float)(lr / bc1), .bc2_sqrt = (float)sqrt(bc2)};
    cq_parallel_for(n, team(n, threads), adamw_range, &a);
}

/// Σ x² in double, in index order (one thread: the order never changes).
double cq_sum_squares(const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
    return s;
}

typedef struct {
    float *acc;
    const float *g;
    float weight;
    int first;
} accumulate_args;

static void accumulate_range(void *q, int64_t i0, int64_t i1) {
    const accumulate_args *a = (const accumulate_args *)q;
    if (a->first) {
        for (int64_t i = i0; i < i1; i++) a->acc[i] = a->weight * a->g[i];
    } else {
        for (int64_t i = i0; i < i1; i++) {
            const float wg = a->weight * a->g[i];
            a->acc[i] += wg;
        }
    }
}

void cq_accumulate_scaled(float *acc, const float *g, float weight, int first, int64_t n, int threads) {
    accumulate_args a = {.acc = acc, .g = g, .weight = weight, .first = first};
    cq_parallel_for(n, team(n, threads), accumulate_range, &a);
}
