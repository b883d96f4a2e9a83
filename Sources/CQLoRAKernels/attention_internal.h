// Internal contract between the attention drivers (attention.c) and the per-ISA attention
// kernels (attention_portable.c, attention_avx2.c, attention_avx512.c, each compiled from
// attention_core.h with its own target attribute). Not part of the Swift-visible API.
#pragma once
#include "kernels_internal.h"

// KB: keys per block (one 16-lane vector of scores per query row; blocks start at multiples of
// KB, so a row's bits never depend on how rows are grouped into work units). ROWS: query rows
// (query heads × queries) that share one transposed K/V block in the forward pass and dq.
enum { CQ_ATTN_KB = 16, CQ_ATTN_ROWS = 48, CQ_ATTN_MAX_D = 256 };

typedef struct {
    const float *q, *k, *v, *o, *lse, *dout;
    float *out, *lse_out, *dq, *dk, *dv, *delta;
    int64_t batch, sq, skv, heads, kv_heads, d;
    float scale;
    int64_t kv_cap;            // rows per batch entry in k/v (>= skv: a KV cache's capacity)
    const int32_t *positions;  // NULL: plain causal; else [batch, seq] position in its example
} cq_attn_args;

/// How the forward pass and dq split their rows: a unit is (batch, KV head, chunk of `hc` query
/// heads of that KV head's group, tile of `qt` queries). The whole group shares one K/V read
/// unless there would be too few units to split (a decode step), then one head per unit.
typedef struct {
    int64_t hc, chunks, qt, tiles, units;
} cq_attn_grid;

static inline cq_attn_grid cq_attn_grid_of(const cq_attn_args *a) {
    const int64_t group = a->heads / a->kv_heads;
    cq_attn_grid g;
    g.hc = group < CQ_ATTN_ROWS ? group : CQ_ATTN_ROWS;
    g.qt = CQ_ATTN_ROWS / g.hc;
    g.tiles = (a->sq + g.qt - 1) / g.qt;
    if (a->batch * a->kv_heads * g.tiles < 4) {   // too few units: one query head per unit
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

// The four passes over work units (cq_parallel_for ranges): the forward and dq over
// cq_attn_grid units; the backward's row terms over (batch, head, query); dk/dv over
// (batch, KV head, key block).
typedef struct {
    cq_range_fn forward, delta, dq, dkv;
} cq_attn_kernels;

#define CQ_ATTN_DECLARE(isa)                                                 \
    void cq_attn_forward_##isa(void *p, int64_t u0, int64_t u1);             \
    void cq_attn_delta_##isa(void *p, int64_t u0, int64_t u1);               \
    void cq_attn_dq_##isa(void *p, int64_t u0, int64_t u1);                  \
    void cq_attn_dkv_##isa(void *p, int64_t u0, int64_t u1);
CQ_ATTN_DECLARE(portable)
CQ_ATTN_DECLARE(avx2)
CQ_ATTN_DECLARE(avx512)
