// The attention kernels' body, compiled once per ISA: the including file defines ATTN_TARGET
// (a target attribute or nothing), ATTN_NAME(x) (the ISA-suffixed symbol) and the register-tile
// sizes below, then includes this file.
//
// Every product is a small register-tiled GEMM on 16-lane vectors (GCC/clang vector types, so
// one source gives 16-lane AVX-512, 2 × 8-lane AVX2 and 4 × 4-lane SSE2 code):
//   scores   S[rows × 16 keys] = Q·Kᵀ: K's block transposed to [d][16]; each K vector load serves
//            ATTN_SR query rows (their q[e] broadcast); four FMA chains per row (e mod 4), as the
//            kernels before this blocking summed, so the forward gives the same bits as they did;
//   P·V, dS·K   y[rows × d] += W[rows × 16]·B[16 × d]: ATTN_PR rows × ATTN_EV vectors of d in
//            registers, each B vector load serving ATTN_PR rows, keys c = 0 ... 15 in order;
//   dSᵀ·Q, Pᵀ·dO   blk[16 × d] += Wᵀ[16 × rows]·X[rows × d]: ATTN_KT keys × ATTN_EV vectors in
//            registers, the rows added in order.
// The tile sizes only decide which rows/keys share a load, never the order of any element's
// additions, so the result of a row does not depend on them: AVX2 and AVX-512 (both FMA) give
// the same bits; the portable build (no FMA on the baseline) rounds each product.
//
// Semantics (see attention.c): query i of a row sits at position skv − sq + i and sees keys
// key_lo(i) ... that position, key_lo = 0, or i − positions[i] for packed rows.
#include "fast_exp.h"
#include <math.h>
#include <string.h>

// 16-lane vectors are passed between the helpers below by value. Every such helper is
// always_inline and static to this translation unit, so no call with a vector argument exists
// in the object code and the AVX2/SSE2 vector ABI note (-Wpsabi) is moot here.
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpsabi"

enum { KB = CQ_ATTN_KB, MAXD = CQ_ATTN_MAX_D };
// Rows taken together per key block (a tile): the scores run over it ATTN_SR rows at a time, P·V
// and dS·K ATTN_PR rows at a time, and dk/dv add all of its rows per load of their block.
#define ATTN_TILE 12

typedef float ATTN_NAME(v16) __attribute__((vector_size(64)));
typedef int32_t ATTN_NAME(i16) __attribute__((vector_size(64)));
typedef uint32_t ATTN_NAME(u16) __attribute__((vector_size(64)));
#define V16 ATTN_NAME(v16)
#define I16 ATTN_NAME(i16)
#define U16 ATTN_NAME(u16)
#define FN ATTN_TARGET static inline __attribute__((always_inline))
#define F(x) ATTN_NAME(x)
#define ALIGNED __attribute__((aligned(64)))

FN V16 F(ld)(const float *p) { V16 v; memcpy(&v, p, sizeof v); return v; }
FN void F(st)(float *p, V16 v) { memcpy(p, &v, sizeof v); }
FN V16 F(splat)(float x) { return (V16){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }
FN V16 F(sel)(I16 m, V16 a, V16 b) { return (V16)((m & (I16)a) | (~m & (I16)b)); }
FN V16 F(vmax)(V16 a, V16 b) { return F(sel)(a > b, a, b); }

// cq_fast_expf on 16 lanes: the same operations in the same order (fast_exp.h's
// CQ_FAST_EXP_CORE, no contraction), so every lane has exactly the bits the scalar function gives.
FN V16 F(vexp)(V16 x) {
#pragma clang fp contract(off)
    V16 c = F(sel)(x < CQ_FAST_EXP_LO, F(splat)(CQ_FAST_EXP_LO), x);
    c = F(sel)(c > CQ_FAST_EXP_HI, F(splat)(CQ_FAST_EXP_HI), c);
    CQ_FAST_EXP_CORE(V16, c, n, p)
    const I16 ni = __builtin_convertvector(n, I16), half = ni >> 1;
    const V16 s1 = (V16)((U16)(half + 127) << 23), s2 = (V16)((U16)(ni - half + 127) << 23);
    return F(sel)(x != x, x, (p * s1) * s2);
}

// max(m, lanes of s) by a tree (a max is exact, so the order only sets the latency).
FN float F(hmax)(V16 s, float m) {
    V16 t = F(vmax)(s, __builtin_shufflevector(s, s, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));
    t = F(vmax)(t, __builtin_shufflevector(t, t, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3));
    t = F(vmax)(t, __builtin_shufflevector(t, t, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1));
    t = F(vmax)(t, __builtin_shufflevector(t, t, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0));
    return t[0] > m ? t[0] : m;
}

// Lanes c0 <= c < cnt of a block (the keys a row sees): all bits set, else 0.
FN I16 F(lanes)(int64_t c0, int64_t cnt) {
    const I16 iota = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    return (iota >= (int32_t)c0) & (iota < (int32_t)cnt);
}

ATTN_TARGET static inline int64_t F(key_lo)(const cq_attn_args *a, int64_t b, int64_t i) {
    return a->positions ? i - (int64_t)a->positions[b * a->sq + i] : 0;
}

// Which of the block's KB keys (from j0, jn of them) query i sees: [c0, cnt).
ATTN_TARGET static inline int F(visible)(const cq_attn_args *a, int64_t b, int64_t i, int64_t j0, int64_t jn, int64_t *c0,
                                         int64_t *cnt) {
    const int64_t lo = F(key_lo)(a, b, i), last = a->skv - a->sq + i;
    *c0 = lo > j0 ? lo - j0 : 0;
    *cnt = last + 1 - j0 < jn ? last + 1 - j0 : jn;
    return *cnt > *c0;
}

// out[e·KB + c] = in[c·is + e] for a 16 × 16 tile (c, e < 16): four rounds that swap the
// off-diagonal blocks of size 8, 4, 2, 1 between row pairs, all in registers.
FN void F(transpose16)(const float *in, int64_t is, float *out) {
    V16 m[16];
    for (int r = 0; r < 16; r++) m[r] = F(ld)(in + r * is);
    for (int r = 0; r < 16; r++)
        if (!(r & 8)) {
            const V16 x = m[r], y = m[r + 8];
            m[r] = __builtin_shufflevector(x, y, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
            m[r + 8] = __builtin_shufflevector(x, y, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
        }
    for (int r = 0; r < 16; r++)
        if (!(r & 4)) {
            const V16 x = m[r], y = m[r + 4];
            m[r] = __builtin_shufflevector(x, y, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
            m[r + 4] = __builtin_shufflevector(x, y, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
        }
    for (int r = 0; r < 16; r++)
        if (!(r & 2)) {
            const V16 x = m[r], y = m[r + 2];
            m[r] = __builtin_shufflevector(x, y, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
            m[r + 2] = __builtin_shufflevector(x, y, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
        }
    for (int r = 0; r < 16; r++)
        if (!(r & 1)) {
            const V16 x = m[r], y = m[r + 1];
            m[r] = __builtin_shufflevector(x, y, 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
            m[r + 1] = __builtin_shufflevector(x, y, 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
        }
    for (int r = 0; r < 16; r++) F(st)(out + r * KB, m[r]);
}

// Keys [j0, j0 + jn) of one (batch, KV head) (row stride `stride`): rows [KB][dp] (zero past jn
// and past d) in `rows` unless the block is full and d fills whole vectors (then the source
// itself is used); with `t`, also transposed to [dp][KB]. Returns the rows and sets *rs to their stride.
ATTN_TARGET static const float *F(load_block)(const float *src, int64_t stride, int64_t j0, int64_t jn, int64_t d,
                                              float *restrict t, float *restrict rows, int64_t *rs) {
    const int64_t dp = cq_attn_dp(d);
    const float *base = src + j0 * stride;
    if (jn == KB && dp == d) *rs = stride;
    else {
        for (int64_t c = 0; c < KB; c++) {
            if (c < jn) memcpy(rows + c * dp, base + c * stride, sizeof(float) * (size_t)d);
            else memset(rows + c * dp, 0, sizeof(float) * (size_t)d);
            memset(rows + c * dp + d, 0, sizeof(float) * (size_t)(dp - d));
        }
        base = rows;
        *rs = dp;
    }
    if (t)
        for (int64_t e0 = 0; e0 < dp; e0 += 16) F(transpose16)(base + e0, *rs, t + e0 * KB);
    return base;
}

// s[r][c] = Σ_e x[r][e]·t[e·KB + c] for NR rows, each in four FMA chains over e mod 4 (the
// tail into the first), added as (s0 + s1) + (s2 + s3).
FN void F(scores_n)(const int NR, const float *const *x, const float *t, int64_t d, V16 *s) {
    V16 acc[4][ATTN_SR];
    for (int k = 0; k < 4; k++)
        for (int r = 0; r < NR; r++) acc[k][r] = F(splat)(0.0f);
    int64_t e = 0;
    for (; e + 4 <= d; e += 4)
        for (int k = 0; k < 4; k++) {
            const V16 te = F(ld)(t + (e + k) * KB);
            for (int r = 0; r < NR; r++) acc[k][r] = acc[k][r] + te * x[r][e + k];
        }
    for (; e < d; e++) {
        const V16 te = F(ld)(t + e * KB);
        for (int r = 0; r < NR; r++) acc[0][r] = acc[0][r] + te * x[r][e];
    }
    for (int r = 0; r < NR; r++) s[r] = (acc[0][r] + acc[1][r]) + (acc[2][r] + acc[3][r]);
}

// scores_n for nr <= ATTN_TILE rows, ATTN_SR at a time.
ATTN_TARGET static void F(scores)(int nr, const float *const *x, const float *t, int64_t d, V16 *s) {
    int r0 = 0;
    for (; r0 + ATTN_SR <= nr; r0 += ATTN_SR) F(scores_n)(ATTN_SR, x + r0, t, d, s + r0);
    switch (nr - r0) {
#define CASE(n) case n: F(scores_n)(n, x + r0, t, d, s + r0); break;
#if ATTN_SR > 1
    CASE(1)
#endif
#if ATTN_SR > 2
    CASE(2)
#endif
#if ATTN_SR > 3
    CASE(3)
#endif
#if ATTN_SR > 4
    CASE(4)
#endif
#if ATTN_SR > 5
    CASE(5)
#endif
#undef CASE
    default: break;
    }
}

// y[r][e0 + ·] = y[r][e0 + ·]·alpha[r] + Σ_c w[r][c]·b[c·bs + e0 + ·] for NR rows and NV vectors
// of head_dim (c in order: P·V in the forward, dS·K for dq).
FN void F(mix_n)(const int NR, const int NV, float *const *y, const float *alpha, const float (*w)[KB], const float *b,
                 int64_t bs, int64_t e0) {
    V16 acc[ATTN_PR][ATTN_EV];
    for (int r = 0; r < NR; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = F(ld)(y[r] + e0 + 16 * v) * alpha[r];
    for (int c = 0; c < KB; c++) {
        V16 bv[ATTN_EV];
        for (int v = 0; v < NV; v++) bv[v] = F(ld)(b + c * bs + e0 + 16 * v);
        for (int r = 0; r < NR; r++) {
            const float wc = w[r][c];
            for (int v = 0; v < NV; v++) acc[r][v] = acc[r][v] + bv[v] * wc;
        }
    }
    for (int r = 0; r < NR; r++)
        for (int v = 0; v < NV; v++) F(st)(y[r] + e0 + 16 * v, acc[r][v]);
}

// mix_n over all nr rows (ATTN_PR at a time) and the dp/16 vectors of head_dim.
ATTN_TARGET static void F(mix)(int nr, float *const *y, const float *alpha, const float (*w)[KB], const float *b, int64_t bs,
                               int64_t dp) {
    for (int r0 = 0; r0 < nr; r0 += ATTN_PR) {
        const int n = nr - r0 < ATTN_PR ? nr - r0 : ATTN_PR;
        int64_t e0 = 0;
        for (; e0 + 16 * ATTN_EV <= dp; e0 += 16 * ATTN_EV) {
            switch (n) {
#define CASE(k) case k: F(mix_n)(k, ATTN_EV, y + r0, alpha + r0, w + r0, b, bs, e0); break;
            CASE(1)
#if ATTN_PR > 1
            CASE(2)
#endif
#if ATTN_PR > 2
            CASE(3) CASE(4)
#endif
#undef CASE
            default: break;
            }
        }
        for (; e0 < dp; e0 += 16) {
            switch (n) {
#define CASE(k) case k: F(mix_n)(k, 1, y + r0, alpha + r0, w + r0, b, bs, e0); break;
            CASE(1)
#if ATTN_PR > 1
            CASE(2)
#endif
#if ATTN_PR > 2
            CASE(3) CASE(4)
#endif
#undef CASE
            default: break;
            }
        }
    }
}

// blk[c][e0 + ·] += Σ_r w[r][c]·x[r][e0 + ·] for keys c0 ... c0 + ATTN_KT − 1 and NV vectors,
// the nr rows in order (dSᵀ·Q into dk, Pᵀ·dO into dv).
FN void F(rank_n)(const int NV, float *blk, int64_t dp, int c0, int64_t e0, const float (*w)[KB], const float *const *x, int nr) {
    V16 acc[ATTN_KT][ATTN_EV];
    for (int k = 0; k < ATTN_KT; k++)
        for (int v = 0; v < NV; v++) acc[k][v] = F(ld)(blk + (c0 + k) * dp + e0 + 16 * v);
    for (int r = 0; r < nr; r++) {
        V16 xv[ATTN_EV];
        for (int v = 0; v < NV; v++) xv[v] = F(ld)(x[r] + e0 + 16 * v);
        for (int k = 0; k < ATTN_KT; k++) {
            const float wk = w[r][c0 + k];
            for (int v = 0; v < NV; v++) acc[k][v] = acc[k][v] + xv[v] * wk;
        }
    }
    for (int k = 0; k < ATTN_KT; k++)
        for (int v = 0; v < NV; v++) F(st)(blk + (c0 + k) * dp + e0 + 16 * v, acc[k][v]);
}

ATTN_TARGET static void F(rank)(float *blk, int64_t dp, const float (*w)[KB], const float *const *x, int nr) {
    for (int c0 = 0; c0 < KB; c0 += ATTN_KT) {
        int64_t e0 = 0;
        for (; e0 + 16 * ATTN_EV <= dp; e0 += 16 * ATTN_EV) F(rank_n)(ATTN_EV, blk, dp, c0, e0, w, x, nr);
        for (; e0 < dp; e0 += 16) F(rank_n)(1, blk, dp, c0, e0, w, x, nr);
    }
}

// The unit u of cq_attn_grid g: batch b, KV head kvh, first query head h0 (hn of them), first
// query i0 (n of them).
typedef struct { int64_t b, kvh, h0, hn, i0, n; } F(unit);

ATTN_TARGET static inline F(unit) F(unit_at)(const cq_attn_args *a, const cq_attn_grid *g, int64_t u) {
    const int64_t group = a->heads / a->kv_heads;
    F(unit) r;
    const int64_t t = cq_attn_zigzag(u % g->tiles, g->tiles), ch = (u / g->tiles) % g->chunks;
    r.kvh = (u / (g->tiles * g->chunks)) % a->kv_heads;
    r.b = u / (g->tiles * g->chunks * a->kv_heads);
    r.h0 = r.kvh * group + ch * g->hc;
    r.hn = (ch + 1) * g->hc <= group ? g->hc : group - ch * g->hc;
    r.i0 = t * g->qt;
    r.n = a->sq - r.i0 < g->qt ? a->sq - r.i0 : g->qt;
    return r;
}

// Online softmax over key blocks for the rows of each unit. Per block, the rows that see a key
// of it are gathered and taken ATTN_TILE at a time: scores, the running max and row sums
// (16 lanes), then P·V into the row's accumulator. A row that sees no key of a block is left
// out (its state would be unchanged: alpha = 1, p = 0).
ATTN_TARGET void F(forward)(void *p, int64_t u0, int64_t u1) {
    const cq_attn_args *a = (const cq_attn_args *)p;
    const cq_attn_grid g = cq_attn_grid_of(a);
    const int64_t d = a->d, dp = cq_attn_dp(d), off = a->skv - a->sq, qw = a->heads * d, kw = a->kv_heads * d;
    float acc[CQ_ATTN_ROWS][MAXD] ALIGNED, lsum[CQ_ATTN_ROWS][KB] ALIGNED, m[CQ_ATTN_ROWS];
    float kt[MAXD * KB] ALIGNED, kr[KB * MAXD] ALIGNED, vr[KB * MAXD] ALIGNED;
    float pw[ATTN_TILE][KB] ALIGNED, alpha[KB] ALIGNED;
    for (int64_t u = u0; u < u1; u++) {
        const F(unit) w = F(unit_at)(a, &g, u);
        const int rows = (int)(w.hn * w.n);
        const float *kb = a->k + w.b * a->kv_cap * kw + w.kvh * d, *vb = a->v + w.b * a->kv_cap * kw + w.kvh * d;
        for (int r = 0; r < rows; r++) {
            m[r] = -INFINITY;
            memset(acc[r], 0, sizeof(float) * (size_t)dp);
            memset(lsum[r], 0, sizeof lsum[r]);
        }
        const int64_t last = off + w.i0 + w.n - 1;                // the tile's last query sees keys ...last
        const int64_t first = F(key_lo)(a, w.b, w.i0) / KB * KB;  // starts never decrease
        for (int64_t j0 = first; j0 <= last; j0 += KB) {
            const int64_t jn = last + 1 - j0 < KB ? last + 1 - j0 : KB;
            int vis[CQ_ATTN_ROWS], nv = 0;
            int64_t c0s[CQ_ATTN_ROWS], cnts[CQ_ATTN_ROWS];
            for (int r = 0; r < rows; r++)
                if (F(visible)(a, w.b, w.i0 + r % w.n, j0, jn, &c0s[nv], &cnts[nv])) vis[nv++] = r;
            if (!nv) continue;
            int64_t vs, ks;
            F(load_block)(kb, kw, j0, jn, d, kt, kr, &ks);
            const float *vrows = F(load_block)(vb, kw, j0, jn, d, NULL, vr, &vs);
            for (int t0 = 0; t0 < nv; t0 += ATTN_TILE) {
                const int nr = nv - t0 < ATTN_TILE ? nv - t0 : ATTN_TILE;
                const float *qs[ATTN_TILE];
                float *ys[ATTN_TILE];
                V16 s[ATTN_TILE];
                for (int t = 0; t < nr; t++) {
                    const int r = vis[t0 + t];
                    qs[t] = a->q + (w.b * a->sq + w.i0 + r % w.n) * qw + (w.h0 + r / w.n) * d;
                    ys[t] = acc[r];
                }
                F(scores)(nr, qs, kt, d, s);
                float bmax[ATTN_TILE], diff[KB] ALIGNED;
                memset(diff, 0, sizeof diff);
                for (int t = 0; t < nr; t++) {
                    const int r = vis[t0 + t];
                    s[t] = F(sel)(F(lanes)(c0s[t0 + t], cnts[t0 + t]), s[t] * a->scale, F(splat)(-INFINITY));
                    bmax[t] = F(hmax)(s[t], m[r]);   // finite: the row sees a key here
                    diff[t] = m[r] - bmax[t];        // −inf on the row's first block (alpha = 0)
                    m[r] = bmax[t];
                }
                F(st)(alpha, F(vexp)(F(ld)(diff)));   // the tile's rescale factors, one row per lane
                for (int t = 0; t < nr; t++) {
                    const int r = vis[t0 + t];
                    const V16 pr = F(vexp)(s[t] - bmax[t]);
                    F(st)(pw[t], pr);
                    F(st)(lsum[r], F(ld)(lsum[r]) * alpha[t] + pr);
                }
                F(mix)(nr, ys, alpha, (const float (*)[KB])pw, vrows, vs, dp);
            }
        }
        for (int r = 0; r < rows; r++) {
            const int64_t h = w.h0 + r / w.n, i = w.i0 + r % w.n;
            float l = 0.0f;
            for (int c = 0; c < KB; c++) l += lsum[r][c];
            float *oi = a->out + (w.b * a->sq + i) * qw + h * d;
            const float inv = 1.0f / l;
            for (int64_t e = 0; e < d; e++) oi[e] = acc[r][e] * inv;
            a->lse_out[(w.b * a->heads + h) * a->sq + i] = m[r] + logf(l);
        }
    }
}

// delta[b, h, i] = Σ_e dout·out over the head's row (the softmax backward's row term), summed
// in exactly the order of a lane of dP = dout·Vᵀ in scores: when a row sees one key (out = v
// exactly), dp − delta is exactly 0.
ATTN_TARGET void F(delta)(void *p, int64_t r0, int64_t r1) {
    const cq_attn_args *a = (const cq_attn_args *)p;
    const int64_t d = a->d, qw = a->heads * d;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t b = r / (a->heads * a->sq), h = (r / a->sq) % a->heads, i = r % a->sq;
        const float *x = a->dout + (b * a->sq + i) * qw + h * d, *y = a->o + (b * a->sq + i) * qw + h * d;
        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
        int64_t e = 0;
        for (; e + 4 <= d; e += 4) {
            s0 = s0 + x[e] * y[e];
            s1 = s1 + x[e + 1] * y[e + 1];
            s2 = s2 + x[e + 2] * y[e + 2];
            s3 = s3 + x[e + 3] * y[e + 3];
        }
        for (; e < d; e++) s0 = s0 + x[e] * y[e];
        a->delta[r] = (s0 + s1) + (s2 + s3);
    }
}

// The dq partial sums of key chunk ch: [batch][heads][sq][dp].
ATTN_TARGET static inline float *F(dq_row)(const cq_attn_args *a, int64_t ch, int64_t b, int64_t h, int64_t i) {
    return a->dq_part + (((ch * a->batch + b) * a->heads + h) * a->sq + i) * cq_attn_dp(a->d);
}

// One unit per (batch, KV head, key chunk): for each key block of the chunk in order, the
// group's query heads in order and their queries that see the block in order, ATTN_TILE rows at a
// time: S and dP = dout·Vᵀ (recomputed), P = exp(S·scale − lse), dS = P·(dP − delta)·scale; then
// dq (this chunk's partial) += dS·K, dk += dSᵀ·Q, dv += Pᵀ·dout. dk and dv of the block are
// complete when its rows are done (no other unit sees the block); dq is added over the chunks
// in order by dq_sum.
ATTN_TARGET void F(grad)(void *p, int64_t u0, int64_t u1) {
    const cq_attn_args *a = (const cq_attn_args *)p;
    const int64_t d = a->d, dp = cq_attn_dp(d), off = a->skv - a->sq, qw = a->heads * d, kw = a->kv_heads * d;
    const int64_t group = a->heads / a->kv_heads, C = a->chunks;
    int64_t bound[CQ_ATTN_MAX_CHUNKS + 1];
    cq_attn_chunk_bounds(a, bound);
    float dk[KB * MAXD] ALIGNED, dv[KB * MAXD] ALIGNED;
    float kt[MAXD * KB] ALIGNED, vt[MAXD * KB] ALIGNED, kr[KB * MAXD] ALIGNED, vr[KB * MAXD] ALIGNED;
    float xq[ATTN_TILE][MAXD] ALIGNED, xo[ATTN_TILE][MAXD] ALIGNED;   // padded q / dout rows (d not a multiple of 16)
    float pw[ATTN_TILE][KB] ALIGNED, dsw[ATTN_TILE][KB] ALIGNED, ones[ATTN_TILE];
    for (int t = 0; t < ATTN_TILE; t++) {
        ones[t] = 1.0f;
        memset(xq[t], 0, sizeof xq[t]);
        memset(xo[t], 0, sizeof xo[t]);
    }
    for (int64_t u = u0; u < u1; u++) {
        const int64_t ch = u % C, kvh = (u / C) % a->kv_heads, b = u / (C * a->kv_heads);
        const int64_t blo = bound[ch], bhi = bound[ch + 1];
        if (blo >= bhi) continue;
        const int64_t ilo = blo * KB - off > 0 ? blo * KB - off : 0;
        for (int64_t h = kvh * group; h < (kvh + 1) * group; h++)
            memset(F(dq_row)(a, ch, b, h, ilo), 0, sizeof(float) * (size_t)((a->sq - ilo) * dp));
        const float *kb = a->k + b * a->skv * kw + kvh * d, *vb = a->v + b * a->skv * kw + kvh * d;
        for (int64_t blk = blo; blk < bhi; blk++) {
            const int64_t j0 = blk * KB, jn = a->skv - j0 < KB ? a->skv - j0 : KB;
            int64_t ks, unused_stride;
            const float *krows = F(load_block)(kb, kw, j0, jn, d, kt, kr, &ks);
            F(load_block)(vb, kw, j0, jn, d, vt, vr, &unused_stride);
            memset(dk, 0, sizeof(float) * (size_t)(KB * dp));
            memset(dv, 0, sizeof(float) * (size_t)(KB * dp));
            const int64_t first = j0 - off > 0 ? j0 - off : 0;
            int64_t end = first;   // rows first ... end − 1 see a key of the block (starts never decrease)
            while (end < a->sq && F(key_lo)(a, b, end) < j0 + jn) end++;
            for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {
                const int64_t row0 = (b * a->heads + h) * a->sq;
                for (int64_t i0 = first; i0 < end; i0 += ATTN_TILE) {
                    const int nr = end - i0 < ATTN_TILE ? (int)(end - i0) : ATTN_TILE;
                    const float *qs[ATTN_TILE], *os[ATTN_TILE], *xqs[ATTN_TILE], *xos[ATTN_TILE];
                    float *ys[ATTN_TILE];
                    V16 s[ATTN_TILE], dpv[ATTN_TILE];
                    for (int t = 0; t < nr; t++) {
                        qs[t] = a->q + (b * a->sq + i0 + t) * qw + h * d;
                        os[t] = a->dout + (b * a->sq + i0 + t) * qw + h * d;
                        ys[t] = F(dq_row)(a, ch, b, h, i0 + t);
                        if (dp == d) { xqs[t] = qs[t]; xos[t] = os[t]; }
                        else {
                            memcpy(xq[t], qs[t], sizeof(float) * (size_t)d);
                            memcpy(xo[t], os[t], sizeof(float) * (size_t)d);
                            xqs[t] = xq[t];
                            xos[t] = xo[t];
                        }
                    }
                    F(scores)(nr, qs, kt, d, s);
                    F(scores)(nr, os, vt, d, dpv);
                    for (int t = 0; t < nr; t++) {
                        int64_t c0, cnt;
                        F(visible)(a, b, i0 + t, j0, jn, &c0, &cnt);
                        const V16 x = s[t] * a->scale;
                        const V16 pr = F(sel)(F(lanes)(c0, cnt), F(vexp)(x - a->lse[row0 + i0 + t]), F(splat)(0.0f));
                        const V16 dsv = pr * (dpv[t] - a->delta[row0 + i0 + t]);
                        F(st)(pw[t], pr);
                        F(st)(dsw[t], dsv * a->scale);
                    }
                    F(mix)(nr, ys, ones, (const float (*)[KB])dsw, krows, ks, dp);
                    F(rank)(dk, dp, (const float (*)[KB])dsw, xqs, nr);
                    F(rank)(dv, dp, (const float (*)[KB])pw, xos, nr);
                }
            }
            for (int64_t c = 0; c < jn; c++) {
                memcpy(a->dk + (b * a->skv + j0 + c) * kw + kvh * d, dk + c * dp, sizeof(float) * (size_t)d);
                memcpy(a->dv + (b * a->skv + j0 + c) * kw + kvh * d, dv + c * dp, sizeof(float) * (size_t)d);
            }
        }
    }
}

// dq[b, i, h] = the chunks' partial sums added in chunk order (a chunk adds only to the queries
// from its first key on), per (batch, query, head).
ATTN_TARGET void F(dq_sum)(void *p, int64_t r0, int64_t r1) {
    const cq_attn_args *a = (const cq_attn_args *)p;
    const int64_t d = a->d, off = a->skv - a->sq, C = a->chunks;
    int64_t bound[CQ_ATTN_MAX_CHUNKS + 1];
    cq_attn_chunk_bounds(a, bound);
    float sum[MAXD] ALIGNED;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t h = r % a->heads, i = (r / a->heads) % a->sq, b = r / (a->heads * a->sq);
        int started = 0;
        for (int64_t ch = 0; ch < C; ch++) {
            if (bound[ch] >= bound[ch + 1] || bound[ch] * KB - off > i) continue;
            const float *x = F(dq_row)(a, ch, b, h, i);
            if (!started) memcpy(sum, x, sizeof(float) * (size_t)d);
            else for (int64_t e = 0; e < d; e++) sum[e] += x[e];
            started = 1;
        }
        if (!started) memset(sum, 0, sizeof(float) * (size_t)d);
        memcpy(a->dq + (b * a->sq + i) * a->heads * d + h * d, sum, sizeof(float) * (size_t)d);
    }
}

#pragma clang diagnostic pop

#undef V16
#undef I16
#undef U16
#undef FN
#undef F
#undef ALIGNED
