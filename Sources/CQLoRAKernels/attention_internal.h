// Internal contract between the attention drivers (attention.c) and the per-ISA attention
// kernels (attention_portable.c, attention_avx2.c, attention_avx512.c, each compiled from
// attention_core.h with its own target attribute). Not part of the Swift-visible API.
#pragma once
#include "kernels_internal.h"

enum { CQ_ATTN_QT = 16, CQ_ATTN_KB = 64, CQ_ATTN_MAX_D = 256 };

typedef struct {
    const float *q, *k, *v, *o, *lse, *dout;
    float *out, *lse_out, *dq, *dk, *dv, *delta;
    int64_t batch, sq, skv, heads, kv_heads, d;
    float scale;
    int64_t kv_cap;            // rows per batch entry in k/v (>= skv: a KV cache's capacity)
    const int32_t *positions;  // NULL: plain causal; else [batch, seq] position in its example
} cq_attn_args;

// The four passes over work units (cq_parallel_for ranges): the forward over (batch, head,
// query tile); the backward's row terms and dq over (batch, head, query); dk/dv over
// (batch, KV head, key).
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
