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
// Work is split over (batch, KV head, its query heads, query tile) for the forward pass
// (cq_attn_grid: the GQA group's query heads share each K/V block; the causal tiles are visited
// in a zig-zag order so that the static split gives each thread about the same work). The
// backward is one pass over (batch, KV head, chunk of keys) units (flash-attention 2 style): a
// unit owns its keys' dk/dv and writes its own partial dq, and a last pass adds the chunks'
// partials in chunk order. The number of chunks depends on the shape only (cq_attn_chunks), and
// every output element is reduced by one thread in a fixed order, so any thread count gives the
// same bits.
//
// The kernels themselves are in attention_core.h (register-tiled micro-GEMMs on 16-lane
// vectors), compiled per ISA (attention_<isa>.c) and picked here by cq_detect_isa(). Design and
// measurements: docs/attention.md.
#include "attention_internal.h"

static cq_attn_kernels kernels(void) {
    switch (cq_detect_isa()) {
#if CQ_X86
    case CQ_ISA_AVX512:
        return (cq_attn_kernels){cq_attn_forward_avx512, cq_attn_delta_avx512, cq_attn_grad_avx512, cq_attn_dq_sum_avx512};
    case CQ_ISA_AVX2:
        return (cq_attn_kernels){cq_attn_forward_avx2, cq_attn_delta_avx2, cq_attn_grad_avx2, cq_attn_dq_sum_avx2};
#endif
    default:
        return (cq_attn_kernels){cq_attn_forward_portable, cq_attn_delta_portable, cq_attn_grad_portable, cq_attn_dq_sum_portable};
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
    cq_attn_args a = {.q = q, .k = k, .v = v, .out = out, .lse_out = lse, .batch = batch, .sq = seq_q, .skv = kv_len,
                      .heads = heads, .kv_heads = kv_heads, .d = head_dim, .scale = scale, .kv_cap = kv_cap};
    cq_parallel_for(cq_attn_grid_of(&a).units, threads_for(batch * heads * seq_q * kv_len * head_dim, threads), kernels().forward, &a);
}

void cq_attention_segmented(const float *q, const float *k, const float *v, const int32_t *positions, float *out, float *lse,
                            int64_t batch, int64_t seq, int64_t heads, int64_t kv_heads, int64_t head_dim, float scale, int threads) {
    cq_attn_args a = {.q = q, .k = k, .v = v, .out = out, .lse_out = lse, .batch = batch, .sq = seq, .skv = seq, .heads = heads,
                      .kv_heads = kv_heads, .d = head_dim, .scale = scale, .kv_cap = seq, .positions = positions};
    cq_parallel_for(cq_attn_grid_of(&a).units, threads_for(batch * heads * seq * seq * head_dim, threads), kernels().forward, &a);
}

// Scratch: each query row's delta, then (64-byte aligned) the chunks' dq partial sums.
static int64_t delta_bytes(int64_t batch, int64_t seq_q, int64_t heads) {
    return ((int64_t)sizeof(float) * batch * heads * seq_q + 63) / 64 * 64;
}

int64_t cq_attention_grad_scratch_bytes(int64_t batch, int64_t seq_q, int64_t seq_kv, int64_t heads, int64_t kv_heads,
                                        int64_t head_dim) {
    return 64 + delta_bytes(batch, seq_q, heads)
        + (int64_t)sizeof(float) * cq_attn_chunks(batch, kv_heads, seq_kv) * batch * heads * seq_q * cq_attn_dp(head_dim);
}

int64_t cq_attention_grad_chunks(int64_t batch, int64_t kv_heads, int64_t seq_kv) {
    return cq_attn_chunks(batch, kv_heads, seq_kv);
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
    char *base = (char *)(((uintptr_t)scratch + 63) / 64 * 64);
    cq_attn_args a = {.q = q, .k = k, .v = v, .o = out, .lse = lse, .dout = dout, .dq = dq, .dk = dk, .dv = dv,
                      .delta = (float *)base, .batch = batch, .sq = seq_q, .skv = seq_kv, .heads = heads, .kv_heads = kv_heads,
                      .d = head_dim, .scale = scale, .kv_cap = seq_kv, .positions = positions,
                      .chunks = cq_attn_chunks(batch, kv_heads, seq_kv),
                      .dq_part = (float *)(base + delta_bytes(batch, seq_q, heads))};
    const int t = threads_for(batch * heads * seq_q * seq_kv * head_dim, threads);
    const cq_attn_kernels f = kernels();
    cq_parallel_for(batch * heads * seq_q, t, f.delta, &a);
    cq_parallel_for(batch * kv_heads * a.chunks, t, f.grad, &a);
    cq_parallel_for(batch * seq_q * heads, t, f.dq_sum, &a);
}
