// The attention kernels' body, compiled once per ISA: the including file defines ATTN_TARGET
// (a target attribute or nothing), ATTN_NAME(x) (the ISA-suffixed symbol) and ATTN_DOT (its
// fixed-order dot product), then includes this file. Dot products go through ATTN_DOT (a fixed
// lane split and reduction, so any thread gets the same bits); the element-wise loops over
// head_dim (y += s·x, y *= s) are written so the compiler vectorizes them for the target (no
// cross-element reduction, so no reassociation is needed).
//
// Semantics (see attention.c): query i of a row sits at position skv − sq + i and sees keys
// key_lo(i) ... that position, key_lo = 0, or i − positions[i] for packed rows.
#include <math.h>
#include <string.h>

ATTN_TARGET static inline int64_t ATTN_NAME(key_lo)(const cq_attn_args *a, int64_t b, int64_t i) {
    return a->positions ? i - (int64_t)a->positions[b * a->sq + i] : 0;
}

// y[e] += s·x[e]
ATTN_TARGET static inline void ATTN_NAME(axpy)(float *restrict y, float s, const float *restrict x, int64_t n) {
    for (int64_t e = 0; e < n; e++) y[e] += s * x[e];
}

// y[e] *= s
ATTN_TARGET static inline void ATTN_NAME(scal)(float *restrict y, float s, int64_t n) {
    for (int64_t e = 0; e < n; e++) y[e] *= s;
}

// Online softmax over key blocks of CQ_ATTN_KB for a tile of up to CQ_ATTN_QT queries of one
// (batch, head): the tile's keys are read once per block for all its queries.
ATTN_TARGET void ATTN_NAME(forward)(void *p, int64_t u0, int64_t u1) {
    const cq_attn_args *a = (const cq_attn_args *)p;
    enum { QT = CQ_ATTN_QT, KB = CQ_ATTN_KB };
    const int64_t d = a->d, tiles = (a->sq + QT - 1) / QT, off = a->skv - a->sq;
    const int64_t qw = a->heads * d, kw = a->kv_heads * d, group = a->heads / a->kv_heads;
    float acc[CQ_ATTN_QT][CQ_ATTN_MAX_D] __attribute__((aligned(64))), m[QT], l[QT], s[KB];
    for (int64_t u = u0; u < u1; u++) {
        const int64_t b = u / (a->heads * tiles), h = (u / tiles) % a->heads, t = u % tiles;
        const int64_t i0 = t * QT, n = a->sq - i0 < QT ? a->sq - i0 : QT, kvh = h / group;
        const float *kb = a->k + b * a->kv_cap * kw + kvh * d, *vb = a->v + b * a->kv_cap * kw + kvh * d;
        for (int64_t r = 0; r < n; r++) { m[r] = -INFINITY; l[r] = 0.0f; memset(acc[r], 0, sizeof(float) * d); }
        const int64_t last = off + i0 + n - 1;              // the tile's last query sees keys lo0...last
        const int64_t lo0 = ATTN_NAME(key_lo)(a, b, i0);    // the tile's smallest first key (starts never decrease)
        for (int64_t j0 = lo0; j0 <= last; j0 += KB) {
            const int64_t jn = last + 1 - j0 < KB ? last + 1 - j0 : KB;
            for (int64_t r = 0; r < n; r++) {
                const int64_t i = i0 + r, visible = off + i - j0 + 1;   // keys j0..<j0+visible
                const int64_t cnt = visible < jn ? visible : jn, lo = ATTN_NAME(key_lo)(a, b, i);
                const int64_t c0 = lo > j0 ? lo - j0 : 0;  // keys before the example's start are skipped
                if (cnt <= c0) continue;
                const float *qi = a->q + (b * a->sq + i) * qw + h * d;
                float bmax = -INFINITY;
                for (int64_t c = c0; c < cnt; c++) {
                    const float score = ATTN_DOT(qi, kb + (j0 + c) * kw, d) * a->scale;
                    s[c] = score;
                    bmax = score > bmax ? score : bmax;
                }
                const float mnew = bmax > m[r] ? bmax : m[r];
                const float alpha = expf(m[r] - mnew);   // 0 on the first block (m = −inf)
                if (alpha != 1.0f) ATTN_NAME(scal)(acc[r], alpha, d);
                float sum = 0.0f;
                for (int64_t c = c0; c < cnt; c++) {
                    const float pj = expf(s[c] - mnew);
                    sum += pj;
                    ATTN_NAME(axpy)(acc[r], pj, vb + (j0 + c) * kw, d);
                }
                l[r] = l[r] * alpha + sum;
                m[r] = mnew;
            }
        }
        for (int64_t r = 0; r < n; r++) {
            const int64_t i = i0 + r;
            float *oi = a->out + (b * a->sq + i) * qw + h * d;
            const float inv = 1.0f / l[r];
            for (int64_t e = 0; e < d; e++) oi[e] = acc[r][e] * inv;
            a->lse_out[(b * a->heads + h) * a->sq + i] = m[r] + logf(l[r]);
        }
    }
}

// delta[b, h, i] = Σ_e dout·out over the head's row (the softmax backward's row term).
ATTN_TARGET void ATTN_NAME(delta)(void *p, int64_t r0, int64_t r1) {
    const cq_attn_args *a = (const cq_attn_args *)p;
    const int64_t d = a->d, qw = a->heads * d;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t b = r / (a->heads * a->sq), h = (r / a->sq) % a->heads, i = r % a->sq;
        const int64_t at = (b * a->sq + i) * qw + h * d;
        a->delta[r] = ATTN_DOT(a->dout + at, a->o + at, d);
    }
}

// ds_ij = p_ij·(dout_i·v_j − delta_i) with p_ij = exp(score_ij − lse_i), recomputed from q and k.
ATTN_TARGET static inline float ATTN_NAME(dscore)(const cq_attn_args *a, const float *qi, const float *doi, const float *kj,
                                                  const float *vj, float lse, float delta, float *pout) {
    const float score = ATTN_DOT(qi, kj, a->d) * a->scale;
    const float pj = expf(score - lse);
    *pout = pj;
    return pj * (ATTN_DOT(doi, vj, a->d) - delta);
}

// dq_i = scale·Σ_j ds_ij·k_j, per (batch, head, query).
ATTN_TARGET void ATTN_NAME(dq)(void *p, int64_t r0, int64_t r1) {
    const cq_attn_args *a = (const cq_attn_args *)p;
    const int64_t d = a->d, qw = a->heads * d, kw = a->kv_heads * d, off = a->skv - a->sq, group = a->heads / a->kv_heads;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t b = r / (a->heads * a->sq), h = (r / a->sq) % a->heads, i = r % a->sq, kvh = h / group;
        const int64_t at = (b * a->sq + i) * qw + h * d;
        const float *qi = a->q + at, *doi = a->dout + at;
        const float lse = a->lse[r], delta = a->delta[r];
        float *dqi = a->dq + at;
        memset(dqi, 0, sizeof(float) * d);
        for (int64_t j = ATTN_NAME(key_lo)(a, b, i); j <= off + i; j++) {
            const float *kj = a->k + (b * a->skv + j) * kw + kvh * d, *vj = a->v + (b * a->skv + j) * kw + kvh * d;
            float pj;
            const float ds = ATTN_NAME(dscore)(a, qi, doi, kj, vj, lse, delta, &pj) * a->scale;
            ATTN_NAME(axpy)(dqi, ds, kj, d);
        }
    }
}

// dk_j = scale·Σ ds_ij·q_i and dv_j = Σ p_ij·dout_i over the group's query heads (in order) and
// the queries that see key j (in order), per (batch, KV head, key).
ATTN_TARGET void ATTN_NAME(dkv)(void *p, int64_t r0, int64_t r1) {
    const cq_attn_args *a = (const cq_attn_args *)p;
    const int64_t d = a->d, qw = a->heads * d, kw = a->kv_heads * d, off = a->skv - a->sq, group = a->heads / a->kv_heads;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t b = r / (a->kv_heads * a->skv), kvh = (r / a->skv) % a->kv_heads, j = r % a->skv;
        const int64_t at = (b * a->skv + j) * kw + kvh * d;
        const float *kj = a->k + at, *vj = a->v + at;
        float *dkj = a->dk + at, *dvj = a->dv + at;
        memset(dkj, 0, sizeof(float) * d);
        memset(dvj, 0, sizeof(float) * d);
        const int64_t first = j - off > 0 ? j - off : 0;
        for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {
            for (int64_t i = first; i < a->sq && ATTN_NAME(key_lo)(a, b, i) <= j; i++) {
                const int64_t qa = (b * a->sq + i) * qw + h * d, row = (b * a->heads + h) * a->sq + i;
                const float *qi = a->q + qa, *doi = a->dout + qa;
                float pj;
                const float ds = ATTN_NAME(dscore)(a, qi, doi, kj, vj, a->lse[row], a->delta[row], &pj) * a->scale;
                ATTN_NAME(axpy)(dkj, ds, qi, d);
                ATTN_NAME(axpy)(dvj, pj, doi, d);
            }
        }
    }
}
