// The attention kernels' body, compiled once per ISA: the including file defines ATTN_TARGET
// (a target attribute or nothing) and ATTN_NAME(x) (the ISA-suffixed symbol), then includes
// this file.
//
// Blocking: keys are taken KB = 16 at a time. A block of K (and V) is transposed once into
// [d][KB] so that a query row's 16 scores are 16-lane vector FMAs over head_dim (no horizontal
// reduction per score), and copied as [KB][d] rows (zero-padded past the last key) for the
// P·V and dS·K products, which are FMAs over head_dim. Several query rows (the GQA group's
// query heads × a tile of queries, cq_attn_grid) share each block. Every loop has a fixed
// order and fixed-width lanes, so any thread count gives the same bits; the compiler picks the
// vector width per target.
//
// Semantics (see attention.c): query i of a row sits at position skv − sq + i and sees keys
// key_lo(i) ... that position, key_lo = 0, or i − positions[i] for packed rows.
#include "fast_exp.h"
#include <math.h>
#include <string.h>

enum { KB = CQ_ATTN_KB };

ATTN_TARGET static inline int64_t ATTN_NAME(key_lo)(const cq_attn_args *a, int64_t b, int64_t i) {
    return a->positions ? i - (int64_t)a->positions[b * a->sq + i] : 0;
}

// Keys [j0, j0 + jn) of one (batch, KV head) (row stride `stride`): rows [KB][d] and, when
// `t` is not NULL, transposed [d][KB]; zero past jn.
ATTN_TARGET static void ATTN_NAME(load_block)(const float *src, int64_t stride, int64_t j0, int64_t jn, int64_t d,
                                              float *restrict rows, float *restrict t) {
    for (int64_t c = 0; c < KB; c++) {
        if (c < jn) memcpy(rows + c * d, src + (j0 + c) * stride, sizeof(float) * (size_t)d);
        else memset(rows + c * d, 0, sizeof(float) * (size_t)d);
    }
    if (t)
        for (int64_t e = 0; e < d; e++)
            for (int64_t c = 0; c < KB; c++) t[e * KB + c] = rows[c * d + e];
}

// s[c] = Σ_e x[e]·t[e·KB + c] for the KB keys of a transposed block: four partial sums over
// e mod 4 (independent FMA chains), added as (s0 + s1) + (s2 + s3).
ATTN_TARGET static inline __attribute__((always_inline)) void ATTN_NAME(scores)(const float *restrict x, const float *restrict t, int64_t d, float *restrict s) {
    float s0[KB], s1[KB], s2[KB], s3[KB];
    for (int c = 0; c < KB; c++) { s0[c] = 0.0f; s1[c] = 0.0f; s2[c] = 0.0f; s3[c] = 0.0f; }
    int64_t e = 0;
    for (; e + 4 <= d; e += 4) {
        const float *restrict t0 = t + e * KB;
        const float x0 = x[e], x1 = x[e + 1], x2 = x[e + 2], x3 = x[e + 3];
        for (int c = 0; c < KB; c++) {
            s0[c] += x0 * t0[c];
            s1[c] += x1 * t0[KB + c];
            s2[c] += x2 * t0[2 * KB + c];
            s3[c] += x3 * t0[3 * KB + c];
        }
    }
    for (; e < d; e++)
        for (int c = 0; c < KB; c++) s0[c] += x[e] * t[e * KB + c];
    for (int c = 0; c < KB; c++) s[c] = (s0[c] + s1[c]) + (s2[c] + s3[c]);
}

// y[e] = y[e]·alpha + Σ_c w[c]·rows[c·d + e] (c in order): P·V and dS·K over a block's rows.
ATTN_TARGET static inline __attribute__((always_inline)) void ATTN_NAME(mix)(float *restrict y, float alpha, const float *restrict w, const float *restrict rows,
                                              int64_t d) {
    for (int64_t e = 0; e < d; e++) {
        float acc = y[e] * alpha;
        for (int c = 0; c < KB; c++) acc += w[c] * rows[c * d + e];
        y[e] = acc;
    }
}

// max(m, s[0], ..., s[KB−1]) by a tree (a max is exact, so the order only sets the latency).
ATTN_TARGET static inline __attribute__((always_inline)) float ATTN_NAME(max16)(const float *s, float m) {
    float t[KB];
    for (int c = 0; c < KB; c++) t[c] = s[c];
    for (int w = KB / 2; w >= 1; w /= 2)
        for (int c = 0; c < w; c++) t[c] = t[c + w] > t[c] ? t[c + w] : t[c];
    return t[0] > m ? t[0] : m;
}

// The unit u of cq_attn_grid g: batch b, KV head kvh, first query head h0 (hn of them), first
// query i0 (n of them).
typedef struct { int64_t b, kvh, h0, hn, i0, n; } ATTN_NAME(unit);

ATTN_TARGET static inline ATTN_NAME(unit) ATTN_NAME(unit_at)(const cq_attn_args *a, const cq_attn_grid *g, int64_t u) {
    const int64_t group = a->heads / a->kv_heads;
    ATTN_NAME(unit) r;
    const int64_t t = cq_attn_zigzag(u % g->tiles, g->tiles), ch = (u / g->tiles) % g->chunks;
    r.kvh = (u / (g->tiles * g->chunks)) % a->kv_heads;
    r.b = u / (g->tiles * g->chunks * a->kv_heads);
    r.h0 = r.kvh * group + ch * g->hc;
    r.hn = (ch + 1) * g->hc <= group ? g->hc : group - ch * g->hc;
    r.i0 = t * g->qt;
    r.n = a->sq - r.i0 < g->qt ? a->sq - r.i0 : g->qt;
    return r;
}

// Which of the block's KB keys (from j0, jn of them) query i sees: [c0, cnt).
ATTN_TARGET static inline int ATTN_NAME(visible)(const cq_attn_args *a, int64_t b, int64_t i, int64_t j0, int64_t jn,
                                                 int64_t *c0, int64_t *cnt) {
    const int64_t lo = ATTN_NAME(key_lo)(a, b, i), last = a->skv - a->sq + i;
    *c0 = lo > j0 ? lo - j0 : 0;
    *cnt = last + 1 - j0 < jn ? last + 1 - j0 : jn;
    return *cnt > *c0;
}

// Online softmax over key blocks for the rows of each unit.
ATTN_TARGET void ATTN_NAME(forward)(void *p, int64_t u0, int64_t u1) {
    const cq_attn_args *a = (const cq_attn_args *)p;
    const cq_attn_grid g = cq_attn_grid_of(a);
    const int64_t d = a->d, off = a->skv - a->sq, qw = a->heads * d, kw = a->kv_heads * d;
    float acc[CQ_ATTN_ROWS][CQ_ATTN_MAX_D] __attribute__((aligned(64)));
    float kt[CQ_ATTN_MAX_D * KB] __attribute__((aligned(64))), kr[KB * CQ_ATTN_MAX_D] __attribute__((aligned(64)));
    float vr[KB * CQ_ATTN_MAX_D] __attribute__((aligned(64)));
    float lsum[CQ_ATTN_ROWS][KB] __attribute__((aligned(64))), m[CQ_ATTN_ROWS];
    float s[KB] __attribute__((aligned(64))), pr[KB] __attribute__((aligned(64)));
    for (int64_t u = u0; u < u1; u++) {
        const ATTN_NAME(unit) w = ATTN_NAME(unit_at)(a, &g, u);
        const int64_t rows = w.hn * w.n;
        int64_t rh[CQ_ATTN_ROWS], ri[CQ_ATTN_ROWS];   // row r is query head rh[r], query ri[r]
        for (int64_t r = 0; r < rows; r++) { rh[r] = w.h0 + r / w.n; ri[r] = w.i0 + r % w.n; }
        const float *kb = a->k + w.b * a->kv_cap * kw + w.kvh * d, *vb = a->v + w.b * a->kv_cap * kw + w.kvh * d;
        for (int64_t r = 0; r < rows; r++) {
            m[r] = -INFINITY;
            memset(acc[r], 0, sizeof(float) * (size_t)d);
            for (int c = 0; c < KB; c++) lsum[r][c] = 0.0f;
        }
        const int64_t last = off + w.i0 + w.n - 1;                     // the tile's last query sees keys ...last
        const int64_t first = ATTN_NAME(key_lo)(a, w.b, w.i0) / KB * KB; // starts never decrease
        for (int64_t j0 = first; j0 <= last; j0 += KB) {
            const int64_t jn = last + 1 - j0 < KB ? last + 1 - j0 : KB;
            ATTN_NAME(load_block)(kb, kw, j0, jn, d, kr, kt);
            ATTN_NAME(load_block)(vb, kw, j0, jn, d, vr, NULL);
            for (int64_t r = 0; r < rows; r++) {
                const int64_t h = rh[r], i = ri[r];
                int64_t c0, cnt;
                if (!ATTN_NAME(visible)(a, w.b, i, j0, jn, &c0, &cnt)) continue;
                ATTN_NAME(scores)(a->q + (w.b * a->sq + i) * qw + h * d, kt, d, s);
                for (int c = 0; c < KB; c++) s[c] = c >= c0 && c < cnt ? s[c] * a->scale : -INFINITY;
                const float bmax = ATTN_NAME(max16)(s, m[r]);
                const float alpha = cq_fast_expf(m[r] - bmax);   // 0 on the row's first block (m = −inf)
                for (int c = 0; c < KB; c++) pr[c] = cq_fast_expf(s[c] - bmax);
                for (int c = 0; c < KB; c++) lsum[r][c] = lsum[r][c] * alpha + pr[c];
                ATTN_NAME(mix)(acc[r], alpha, pr, vr, d);
                m[r] = bmax;
            }
        }
        for (int64_t r = 0; r < rows; r++) {
            const int64_t h = rh[r], i = ri[r];
            float l = 0.0f;
            for (int c = 0; c < KB; c++) l += lsum[r][c];
            float *oi = a->out + (w.b * a->sq + i) * qw + h * d;
            const float inv = 1.0f / l;
            for (int64_t e = 0; e < d; e++) oi[e] = acc[r][e] * inv;
            a->lse_out[(w.b * a->heads + h) * a->sq + i] = m[r] + logf(l);
        }
    }
}

// Σ_e x[e]·y[e] in exactly the order of one lane of `scores` (partial sums over e mod 4, the
// tail into the first, then (s0 + s1) + (s2 + s3)).
ATTN_TARGET static inline float ATTN_NAME(dot4)(const float *x, const float *y, int64_t d) {
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    int64_t e = 0;
    for (; e + 4 <= d; e += 4) {
        s0 += x[e] * y[e];
        s1 += x[e + 1] * y[e + 1];
        s2 += x[e + 2] * y[e + 2];
        s3 += x[e + 3] * y[e + 3];
    }
    for (; e < d; e++) s0 += x[e] * y[e];
    return (s0 + s1) + (s2 + s3);
}

// delta[b, h, i] = Σ_e dout·out over the head's row (the softmax backward's row term), summed
// like dout·v_j in block_grad: when a row sees one key (out = v exactly), dp − delta is exactly 0.
ATTN_TARGET void ATTN_NAME(delta)(void *p, int64_t r0, int64_t r1) {
    const cq_attn_args *a = (const cq_attn_args *)p;
    const int64_t d = a->d, qw = a->heads * d;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t b = r / (a->heads * a->sq), h = (r / a->sq) % a->heads, i = r % a->sq;
        const int64_t at = (b * a->sq + i) * qw + h * d;
        a->delta[r] = ATTN_NAME(dot4)(a->dout + at, a->o + at, d);
    }
}

// For query row (b, h, i) against a block: p_c = exp(score − lse) and ds_c = scale·p_c·(dout·v_c − delta),
// both 0 for keys outside [c0, cnt).
ATTN_TARGET static inline void ATTN_NAME(block_grad)(const cq_attn_args *a, int64_t b, int64_t h, int64_t i, const float *kt,
                                                     const float *vt, int64_t c0, int64_t cnt, float *restrict pr,
                                                     float *restrict ds) {
    const int64_t d = a->d, at = (b * a->sq + i) * a->heads * d + h * d, row = (b * a->heads + h) * a->sq + i;
    float s[KB] __attribute__((aligned(64))), dp[KB] __attribute__((aligned(64)));
    ATTN_NAME(scores)(a->q + at, kt, d, s);
    ATTN_NAME(scores)(a->dout + at, vt, d, dp);
    const float lse = a->lse[row], delta = a->delta[row];
    for (int c = 0; c < KB; c++) {
        const float pj = c >= c0 && c < cnt ? cq_fast_expf(s[c] * a->scale - lse) : 0.0f;
        pr[c] = pj;
        ds[c] = pj * (dp[c] - delta) * a->scale;
    }
}

// dq_i = Σ_j ds_ij·k_j over key blocks in order, for the rows of each cq_attn_grid unit.
ATTN_TARGET void ATTN_NAME(dq)(void *p, int64_t u0, int64_t u1) {
    const cq_attn_args *a = (const cq_attn_args *)p;
    const cq_attn_grid g = cq_attn_grid_of(a);
    const int64_t d = a->d, off = a->skv - a->sq, qw = a->heads * d, kw = a->kv_heads * d;
    float acc[CQ_ATTN_ROWS][CQ_ATTN_MAX_D] __attribute__((aligned(64)));
    float kt[CQ_ATTN_MAX_D * KB] __attribute__((aligned(64))), kr[KB * CQ_ATTN_MAX_D] __attribute__((aligned(64)));
    float vt[CQ_ATTN_MAX_D * KB] __attribute__((aligned(64))), vr[KB * CQ_ATTN_MAX_D] __attribute__((aligned(64)));
    float pr[KB] __attribute__((aligned(64))), ds[KB] __attribute__((aligned(64)));
    for (int64_t u = u0; u < u1; u++) {
        const ATTN_NAME(unit) w = ATTN_NAME(unit_at)(a, &g, u);
        const int64_t rows = w.hn * w.n;
        int64_t rh[CQ_ATTN_ROWS], ri[CQ_ATTN_ROWS];   // row r is query head rh[r], query ri[r]
        for (int64_t r = 0; r < rows; r++) { rh[r] = w.h0 + r / w.n; ri[r] = w.i0 + r % w.n; }
        const float *kb = a->k + w.b * a->skv * kw + w.kvh * d, *vb = a->v + w.b * a->skv * kw + w.kvh * d;
        for (int64_t r = 0; r < rows; r++) memset(acc[r], 0, sizeof(float) * (size_t)d);
        const int64_t last = off + w.i0 + w.n - 1, first = ATTN_NAME(key_lo)(a, w.b, w.i0) / KB * KB;
        for (int64_t j0 = first; j0 <= last; j0 += KB) {
            const int64_t jn = last + 1 - j0 < KB ? last + 1 - j0 : KB;
            ATTN_NAME(load_block)(kb, kw, j0, jn, d, kr, kt);
            ATTN_NAME(load_block)(vb, kw, j0, jn, d, vr, vt);
            for (int64_t r = 0; r < rows; r++) {
                const int64_t h = rh[r], i = ri[r];
                int64_t c0, cnt;
                if (!ATTN_NAME(visible)(a, w.b, i, j0, jn, &c0, &cnt)) continue;
                ATTN_NAME(block_grad)(a, w.b, h, i, kt, vt, c0, cnt, pr, ds);
                ATTN_NAME(mix)(acc[r], 1.0f, ds, kr, d);
            }
        }
        for (int64_t r = 0; r < rows; r++) {
            const int64_t h = rh[r], i = ri[r];
            memcpy(a->dq + (w.b * a->sq + i) * qw + h * d, acc[r], sizeof(float) * (size_t)d);
        }
    }
}

// dk[c] += ds[c]·q and dv[c] += p[c]·dout for one query row (p = ds = 0 outside its keys, and
// adding a zero product leaves a sum unchanged, so the row needs no mask here).
ATTN_TARGET static inline void ATTN_NAME(rank1)(float *restrict dk, float *restrict dv, const float *ds, const float *pr,
                                                const float *restrict q, const float *restrict dout, int64_t d) {
    for (int c = 0; c < KB; c++) {
        for (int64_t e = 0; e < d; e++) dk[c * d + e] += ds[c] * q[e];
        for (int64_t e = 0; e < d; e++) dv[c * d + e] += pr[c] * dout[e];
    }
}

// Four rank1 updates in row order with each dk/dv element kept in a register across them
// (the same additions in the same order: the same bits as four rank1 calls).
ATTN_TARGET static inline void ATTN_NAME(rank4)(float *restrict dk, float *restrict dv, float ds[4][KB], float pr[4][KB],
                                                const float *q[4], const float *dout[4], int64_t d) {
    const float *restrict q0 = q[0], *restrict q1 = q[1], *restrict q2 = q[2], *restrict q3 = q[3];
    const float *restrict o0 = dout[0], *restrict o1 = dout[1], *restrict o2 = dout[2], *restrict o3 = dout[3];
    for (int c = 0; c < KB; c++) {
        const float s0 = ds[0][c], s1 = ds[1][c], s2 = ds[2][c], s3 = ds[3][c];
        const float p0 = pr[0][c], p1 = pr[1][c], p2 = pr[2][c], p3 = pr[3][c];
        float *restrict kc = dk + c * d, *restrict vc = dv + c * d;
        for (int64_t e = 0; e < d; e++) kc[e] = kc[e] + s0 * q0[e] + s1 * q1[e] + s2 * q2[e] + s3 * q3[e];
        for (int64_t e = 0; e < d; e++) vc[e] = vc[e] + p0 * o0[e] + p1 * o1[e] + p2 * o2[e] + p3 * o3[e];
    }
}

// dk_j = Σ ds_ij·q_i and dv_j = Σ p_ij·dout_i over the group's query heads (in order) and the
// queries that see key j (in order), per (batch, KV head, key block).
ATTN_TARGET void ATTN_NAME(dkv)(void *p, int64_t u0, int64_t u1) {
    const cq_attn_args *a = (const cq_attn_args *)p;
    const int64_t d = a->d, off = a->skv - a->sq, qw = a->heads * d, kw = a->kv_heads * d, group = a->heads / a->kv_heads;
    const int64_t blocks = (a->skv + KB - 1) / KB;
    float dk[KB * CQ_ATTN_MAX_D] __attribute__((aligned(64))), dv[KB * CQ_ATTN_MAX_D] __attribute__((aligned(64)));
    float kt[CQ_ATTN_MAX_D * KB] __attribute__((aligned(64))), vt[CQ_ATTN_MAX_D * KB] __attribute__((aligned(64)));
    float pr[4][KB] __attribute__((aligned(64))), ds[4][KB] __attribute__((aligned(64)));
    const float *qs[4], *dos[4];
    for (int64_t u = u0; u < u1; u++) {
        const int64_t blk = cq_attn_zigzag(u % blocks, blocks), kvh = (u / blocks) % a->kv_heads, b = u / (blocks * a->kv_heads);
        const int64_t j0 = blk * KB, jn = a->skv - j0 < KB ? a->skv - j0 : KB;
        const float *kb = a->k + b * a->skv * kw + kvh * d, *vb = a->v + b * a->skv * kw + kvh * d;
        ATTN_NAME(load_block)(kb, kw, j0, jn, d, dk, kt);   // dk/dv double as the row buffers here
        ATTN_NAME(load_block)(vb, kw, j0, jn, d, dv, vt);
        memset(dk, 0, sizeof(float) * (size_t)(KB * d));
        memset(dv, 0, sizeof(float) * (size_t)(KB * d));
        const int64_t first = j0 - off > 0 ? j0 - off : 0;
        int ng = 0;   // rows gathered for the next rank-4 update
        for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {
            for (int64_t i = first; i < a->sq; i++) {
                int64_t c0, cnt;
                if (ATTN_NAME(key_lo)(a, b, i) >= j0 + jn) break;   // starts never decrease
                if (!ATTN_NAME(visible)(a, b, i, j0, jn, &c0, &cnt)) continue;
                ATTN_NAME(block_grad)(a, b, h, i, kt, vt, c0, cnt, pr[ng], ds[ng]);
                qs[ng] = a->q + (b * a->sq + i) * qw + h * d;
                dos[ng] = a->dout + (b * a->sq + i) * qw + h * d;
                if (++ng == 4) { ATTN_NAME(rank4)(dk, dv, ds, pr, qs, dos, d); ng = 0; }
            }
        }
        for (int r = 0; r < ng; r++) ATTN_NAME(rank1)(dk, dv, ds[r], pr[r], qs[r], dos[r], d);
        for (int64_t c = 0; c < jn; c++) {
            memcpy(a->dk + (b * a->skv + j0 + c) * kw + kvh * d, dk + c * d, sizeof(float) * (size_t)d);
            memcpy(a->dv + (b * a->skv + j0 + c) * kw + kvh * d, dv + c * d, sizeof(float) * (size_t)d);
        }
    }
}
