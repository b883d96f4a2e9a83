// Causal grouped-query attention, one fused kernel with an online softmax (flash-attention
// style): the [seq, seq] score matrix is never materialised. Query head h reads KV head
// h / (heads / kv_heads). The queries are the LAST seq_q of the seq_kv key positions (query i sits
// at position seq_kv − seq_q + i and sees keys j <= that position), so a KV cache only has to
// pass longer keys/values. Layouts: q/out [batch, seq_q, heads·d], k/v [batch, seq_kv, kv_heads·d],
// lse [batch, heads, seq_q] (each row's log Σ exp(score), kept for the backward pass).
//
// Packed rows (several examples back to back, transformers' position_ids / padding-free
// training): with `positions` (int32 [batch, seq], only when seq_q == seq_kv) query i sees keys
// i − positions[i] ... i, the keys of its own example; positions restart at 0 for each example,
// so segment starts never decrease along a row (the caller checks that).
//
// Work is split over (batch, head, query tile) for the forward pass and dq, and over (batch, KV
// head, key tile) for dk/dv; every output element is reduced by one thread in a fixed order, so
// any thread count gives the same bits.
#include "kernels_internal.h"
#include <math.h>
#include <string.h>

enum { QT = 16, KB = 64, MAX_D = 256 };

typedef struct {
    const float *q, *k, *v, *o, *lse, *dout;
    float *out, *lse_out, *dq, *dk, *dv, *delta;
    int64_t batch, sq, skv, heads, kv_heads, d;
    float scale;
    int64_t kv_cap;   // rows per batch entry in k/v (>= skv: a KV cache's capacity)
    const int32_t *positions;  // NULL: plain causal; else [batch, seq] position in its example
} attn_args;

// The first key query i of batch entry b sees: its example's start (0 without positions).
static inline int64_t key_lo(const attn_args *a, int64_t b, int64_t i) {
    return a->positions ? i - (int64_t)a->positions[b * a->sq + i] : 0;
}

static inline float dot(const float *a, const float *b, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void forward_range(void *p, int64_t u0, int64_t u1) {
    const attn_args *a = (const attn_args *)p;
    const int64_t d = a->d, tiles = (a->sq + QT - 1) / QT, off = a->skv - a->sq;
    const int64_t qw = a->heads * d, kw = a->kv_heads * d, group = a->heads / a->kv_heads;
    float acc[QT][MAX_D], m[QT], l[QT], s[QT][KB];
    for (int64_t u = u0; u < u1; u++) {
        const int64_t b = u / (a->heads * tiles), h = (u / tiles) % a->heads, t = u % tiles;
        const int64_t i0 = t * QT, n = a->sq - i0 < QT ? a->sq - i0 : QT, kvh = h / group;
        const float *kb = a->k + b * a->kv_cap * kw + kvh * d, *vb = a->v + b * a->kv_cap * kw + kvh * d;
        for (int64_t r = 0; r < n; r++) { m[r] = -INFINITY; l[r] = 0.0f; memset(acc[r], 0, sizeof(float) * d); }
        const int64_t last = off + i0 + n - 1;  // the tile's last query sees keys lo0...last
        const int64_t lo0 = key_lo(a, b, i0);   // the tile's smallest first key (starts never decrease)
        for (int64_t j0 = lo0; j0 <= last; j0 += KB) {
            const int64_t jn = last + 1 - j0 < KB ? last + 1 - j0 : KB;
            for (int64_t r = 0; r < n; r++) {
                const int64_t i = i0 + r, visible = off + i - j0 + 1;   // keys j0..<j0+visible
                const int64_t cnt = visible < jn ? visible : jn, lo = key_lo(a, b, i);
                const int64_t c0 = lo > j0 ? lo - j0 : 0;  // keys before the example's start are skipped
                if (cnt <= c0) continue;
                const float *qi = a->q + (b * a->sq + i) * qw + h * d;
                float bmax = -INFINITY;
                for (int64_t c = c0; c < cnt; c++) {
                    const float score = dot(qi, kb + (j0 + c) * kw, d) * a->scale;
                    s[r][c] = score;
                    bmax = score > bmax ? score : bmax;
                }
                const float mnew = bmax > m[r] ? bmax : m[r];
                const float alpha = expf(m[r] - mnew);   // 0 on the first block (m = −inf)
                float sum = 0.0f;
                for (int64_t e = 0; e < d; e++) acc[r][e] *= alpha;
                for (int64_t c = c0; c < cnt; c++) {
                    const float pj = expf(s[r][c] - mnew);
                    sum += pj;
                    const float *vj = vb + (j0 + c) * kw;
                    for (int64_t e = 0; e < d; e++) acc[r][e] += pj * vj[e];
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

static int threads_for(int64_t work, int threads) { return work > 32768 ? threads : 1; }

void cq_attention(const float *q, const float *k, const float *v, float *out, float *lse,
                  int64_t batch, int64_t seq_q, int64_t seq_kv, int64_t heads, int64_t kv_heads, int64_t head_dim,
                  float scale, int threads) {
    cq_attention_cached(q, k, v, out, lse, batch, seq_q, seq_kv, seq_kv, heads, kv_heads, head_dim, scale, threads);
}

void cq_attention_cached(const float *q, const float *k, const float *v, float *out, float *lse,
                         int64_t batch, int64_t seq_q, int64_t kv_len, int64_t kv_cap, int64_t heads, int64_t kv_heads,
                         int64_t head_dim, float scale, int threads) {
    attn_args a = {q, k, v, NULL, NULL, NULL, out, lse, NULL, NULL, NULL, NULL, batch, seq_q, kv_len, heads, kv_heads, head_dim, scale, kv_cap, NULL};
    const int64_t units = batch * heads * ((seq_q + QT - 1) / QT);
    cq_parallel_for(units, threads_for(batch * heads * seq_q * kv_len * head_dim, threads), forward_range, &a);
}

void cq_attention_segmented(const float *q, const float *k, const float *v, const int32_t *positions, float *out, float *lse,
                            int64_t batch, int64_t seq, int64_t heads, int64_t kv_heads, int64_t head_dim, float scale, int threads) {
    attn_args a = {q, k, v, NULL, NULL, NULL, out, lse, NULL, NULL, NULL, NULL, batch, seq, seq, heads, kv_heads, head_dim, scale, seq, positions};
    const int64_t units = batch * heads * ((seq + QT - 1) / QT);
    cq_parallel_for(units, threads_for(batch * heads * seq * seq * head_dim, threads), forward_range, &a);
}

// delta[b, h, i] = Σ_e dout·out over the head's row (the softmax backward's row term).
static void delta_range(void *p, int64_t r0, int64_t r1) {
    const attn_args *a = (const attn_args *)p;
    const int64_t d = a->d, qw = a->heads * d;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t b = r / (a->heads * a->sq), h = (r / a->sq) % a->heads, i = r % a->sq;
        const int64_t at = (b * a->sq + i) * qw + h * d;
        a->delta[r] = dot(a->dout + at, a->o + at, d);
    }
}

// ds_ij = p_ij·(dout_i·v_j − delta_i) with p_ij = exp(score_ij − lse_i), recomputed from q and k.
static inline float dscore(const attn_args *a, const float *qi, const float *doi, const float *kj, const float *vj,
                           float lse, float delta, float *pout) {
    const float score = dot(qi, kj, a->d) * a->scale;
    const float pj = expf(score - lse);
    *pout = pj;
    return pj * (dot(doi, vj, a->d) - delta);
}

// dq_i = scale·Σ_j ds_ij·k_j, per (batch, head, query).
static void dq_range(void *p, int64_t r0, int64_t r1) {
    const attn_args *a = (const attn_args *)p;
    const int64_t d = a->d, qw = a->heads * d, kw = a->kv_heads * d, off = a->skv - a->sq, group = a->heads / a->kv_heads;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t b = r / (a->heads * a->sq), h = (r / a->sq) % a->heads, i = r % a->sq, kvh = h / group;
        const int64_t at = (b * a->sq + i) * qw + h * d;
        const float *qi = a->q + at, *doi = a->dout + at;
        const float lse = a->lse[r], delta = a->delta[r];
        float *dqi = a->dq + at;
        memset(dqi, 0, sizeof(float) * d);
        for (int64_t j = key_lo(a, b, i); j <= off + i; j++) {
            const float *kj = a->k + (b * a->skv + j) * kw + kvh * d, *vj = a->v + (b * a->skv + j) * kw + kvh * d;
            float pj;
            const float ds = dscore(a, qi, doi, kj, vj, lse, delta, &pj) * a->scale;
            for (int64_t e = 0; e < d; e++) dqi[e] += ds * kj[e];
        }
    }
}

// dk_j = scale·Σ ds_ij·q_i and dv_j = Σ p_ij·dout_i over the group's query heads (in order) and
// the queries that see key j (in order), per (batch, KV head, key).
static void dkv_range(void *p, int64_t r0, int64_t r1) {
    const attn_args *a = (const attn_args *)p;
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
            for (int64_t i = first; i < a->sq && key_lo(a, b, i) <= j; i++) {
                const int64_t qa = (b * a->sq + i) * qw + h * d, row = (b * a->heads + h) * a->sq + i;
                const float *qi = a->q + qa, *doi = a->dout + qa;
                float pj;
                const float ds = dscore(a, qi, doi, kj, vj, a->lse[row], a->delta[row], &pj) * a->scale;
                for (int64_t e = 0; e < d; e++) { dkj[e] += ds * qi[e]; dvj[e] += pj * doi[e]; }
            }
        }
    }
}

int64_t cq_attention_grad_scratch_bytes(int64_t batch, int64_t seq_q, int64_t heads) {
    return (int64_t)sizeof(float) * batch * heads * seq_q;
}

void cq_attention_grad(const float *q, const float *k, const float *v, const float *out, const float *lse, const float *dout,
                       float *dq, float *dk, float *dv, void *scratch,
                       int64_t batch, int64_t seq_q, int64_t seq_kv, int64_t heads, int64_t kv_heads, int64_t head_dim,
                       float scale, int threads) {
    cq_attention_grad_segmented(q, k, v, NULL, out, lse, dout, dq, dk, dv, scratch, batch, seq_q, seq_kv, heads, kv_heads, head_dim, scale, threads);
}

void cq_attention_grad_segmented(const float *q, const float *k, const float *v, const int32_t *positions, const float *out,
                                 const float *lse, const float *dout, float *dq, float *dk, float *dv, void *scratch,
                                 int64_t batch, int64_t seq_q, int64_t seq_kv, int64_t heads, int64_t kv_heads, int64_t head_dim,
                                 float scale, int threads) {
    attn_args a = {q, k, v, out, lse, dout, NULL, NULL, dq, dk, dv, (float *)scratch, batch, seq_q, seq_kv, heads, kv_heads, head_dim, scale, seq_kv, positions};
    const int t = threads_for(batch * heads * seq_q * seq_kv * head_dim, threads);
    cq_parallel_for(batch * heads * seq_q, t, delta_range, &a);
    cq_parallel_for(batch * heads * seq_q, t, dq_range, &a);
    cq_parallel_for(batch * kv_heads * seq_kv, t, dkv_range, &a);
}
