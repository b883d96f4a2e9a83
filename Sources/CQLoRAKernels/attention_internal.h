// Internal contract between the attention drivers (attention.c) and the per-ISA attention
// kernels (attention_portable.c, attention_avx2.c, attention_avx512.c, each compiled from
// attention_core.h with its own target attribute). Not part of the Swift-visible API.
#pragma once
#include "kernels_internal.h"

// KB: keys per block (one 16-lane vector of scores per query row; blocks start at multiples of
// KB, so a row's bits never depend on how rows are grouped into work units). ROWS: query rows
// (query heads × queries) that share one transposed K/V block in the forward pass.
// DQ_UNITS: the backward splits each (batch, KV head)'s keys into chunks until there are about
// this many units (a fixed number, never the thread count, so the dq sums have a fixed order).
enum { CQ_ATTN_KB = 16, CQ_ATTN_ROWS = 48, CQ_ATTN_MAX_D = 256, CQ_ATTN_UNITS = 12, CQ_ATTN_MAX_CHUNKS = 12 };

typedef struct {
    const float *q, *k, *v, *o, *lse, *dout;
    float *out, *lse_out, *dq, *dk, *dv, *delta;
    int64_t batch, sq, skv, heads, kv_heads, d;
    float scale;
    int64_t kv_cap;            // rows per batch entry in k/v (>= skv: a KV cache's capacity)
    const int32_t *positions;  // NULL: plain causal; else [batch, seq] position in its example
    int64_t chunks;            // backward: key chunks per (batch, KV head) (cq_attn_chunks)
    float *dq_part;            // backward: dq partial sums [chunks][batch][heads][sq][dp]
} cq_attn_args;

/// head_dim rounded up to whole 16-lane vectors (the padded rows of K/V blocks and dq partials).
static inline int64_t cq_attn_dp(int64_t d) { return (d + 15) / 16 * 16; }

static inline int64_t cq_attn_blocks(int64_t skv) { return (skv + CQ_ATTN_KB - 1) / CQ_ATTN_KB; }

/// Key chunks per (batch, KV head) in the backward: enough units for the threads to share
/// (CQ_ATTN_UNITS in all), at least 4 key blocks a chunk. Depends on the shape only.
static inline int64_t cq_attn_chunks(int64_t batch, int64_t kv_heads, int64_t skv) {
    const int64_t bk = batch * kv_heads, want = (CQ_ATTN_UNITS + bk - 1) / bk, most = cq_attn_blocks(skv) / 4;
    int64_t c = want < most ? want : most;
    if (c > CQ_ATTN_MAX_CHUNKS) c = CQ_ATTN_MAX_CHUNKS;
    return c < 1 ? 1 : c;
}

/// Boundaries (in key blocks) of the chunks: lo[c] ... lo[c + 1] − 1 is chunk c. Chunks carry about
/// equal causal work (a block's work is the number of queries that see it), so a static split of
/// equal-count units is balanced.
static inline void cq_attn_chunk_bounds(const cq_attn_args *a, int64_t lo[CQ_ATTN_MAX_CHUNKS + 1]) {
    const int64_t nb = cq_attn_blocks(a->skv), off = a->skv - a->sq, c = a->chunks;
    int64_t total = 0;
    for (int64_t k = 0; k < nb; k++) {
        const int64_t first = k * CQ_ATTN_KB - off;
        total += a->sq - (first < 0 ? 0 : first > a->sq ? a->sq : first);
    }
    int64_t cum = 0, k = 0;
    for (int64_t ch = 0; ch <= c; ch++) {
        while (k < nb && cum * c < ch * total) {
            const int64_t first = k * CQ_ATTN_KB - off;
            cum += a->sq - (first < 0 ? 0 : first > a->sq ? a->sq : first);
            k++;
        }
        lo[ch] = ch == c ? nb : k;
    }
}

/// How the forward pass splits its rows: a unit is (batch, KV head, chunk of `hc` query
/// heads of that KV head's group, tile of `qt` queries). The whole group shares one K/V read
/// (and one transposition of each K block) unless that leaves a single unit (a decode step with
/// one KV head), then one head per unit.
typedef struct {
    int64_t hc, chunks, qt, tiles, units;
} cq_attn_grid;

static inline cq_attn_grid cq_attn_grid_of(const cq_attn_args *a) {
    const int64_t group = a->heads / a->kv_heads;
    cq_attn_grid g;
    g.hc = group < CQ_ATTN_ROWS ? group : CQ_ATTN_ROWS;
    g.qt = CQ_ATTN_ROWS / g.hc;
    g.tiles = (a->sq + g.qt - 1) / g.qt;
    if (a->batch * a->kv_heads * g.tiles < 2) {   // one unit: one query head per unit instead
        g.hc = 1;
        g.qt = CQ_ATTN_ROWS;
        g.tiles = (a->sq + g.qt - 1) / g.qt;
    }
    g.chunks = (group + g.hc - 1) / g.hc;
    g.units = a->batch * a->kv_heads * g.chunks * g.tiles;
    return g;
}

/// Units of a causal pass cost more the later their tile; visiting tiles 0, n−1, 1, n−2, ...
/// makes every contiguous half of the units (the static split) cost about the same.
static inline int64_t cq_attn_zigzag(int64_t t, int64_t n) { return (t & 1) ? n - 1 - t / 2 : t / 2; }

// The four passes over work units (cq_parallel_for ranges): the forward over cq_attn_grid
// units; the backward's row terms over (batch, head, query); dq/dk/dv over (batch, KV head, key
// chunk); the dq partial sums added over (batch, query, head).
typedef struct {
    cq_range_fn forward, delta, grad, dq_sum;
} cq_attn_kernels;

#define CQ_ATTN_DECLARE(isa)                                                 \
    void cq_attn_forward_##isa(void *p, int64_t u0, int64_t u1);             \
    void cq_attn_delta_##isa(void *p, int64_t u0, int64_t u1);               \
    void cq_attn_grad_##isa(void *p, int64_t u0, int64_t u1);                \
    void cq_attn_dq_sum_##isa(void *p, int64_t u0, int64_t u1);
CQ_ATTN_DECLARE(portable)
CQ_ATTN_DECLARE(avx2)
CQ_ATTN_DECLARE(avx512)
