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
// Work is split over (batch, KV head, its query heads, query tile) for the forward pass and dq
// (cq_attn_grid: the GQA group's query heads share each K/V block), and over (batch, KV head,
// key block) for dk/dv; every output element is reduced by one thread in a fixed order, so any
// thread count gives the same bits. The causal tiles are visited in a zig-zag order so that the
// static split gives each thread about the same work.
//
// The kernels themselves are in attention_core.h, compiled per ISA (attention_<isa>.c) and
// picked here by cq_detect_isa(): vectorized dot products and head_dim loops.
#include "attention_internal.h"

static cq_attn_kernels kernels(void) {
    switch (cq_detect_isa()) {
#if CQ_X86
    case CQ_ISA_AVX512:
        return (cq_attn_kernels){cq_attn_forward_avx512, cq_attn_delta_avx512, cq_attn_dq_avx512, cq_attn_dkv_avx512};
    case CQ_ISA_AVX2:
        return (cq_attn_kernels){cq_attn_forward_avx2, cq_attn_delta_avx2, cq_attn_dq_avx2, cq_attn_dkv_avx2};
#endif
    default:
        return (cq_attn_kernels){cq_attn_forward_portable, cq_attn_delta_portable, cq_attn_dq_portable, cq_attn_dkv_portable};
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
    cq_attn_args a = {q, k, v, NULL, NULL, NULL, out, lse, NULL, NULL, NULL, NULL, batch, seq_q, kv_len, heads, kv_heads, head_dim, scale, kv_cap, NULL};
    cq_parallel_for(cq_attn_grid_of(&a).units, threads_for(batch * heads * seq_q * kv_len * head_dim, threads), kernels().forward, &a);
}

void cq_attention_segmented(const float *q, const float *k, const float *v, const int32_t *positions, float *out, float *lse,
                            int64_t batch, int64_t seq, int64_t heads, int64_t kv_heads, int64_t head_dim, float scale, int threads) {
    cq_attn_args a = {q, k, v, NULL, NULL, NULL, out, lse, NULL, NULL, NULL, NULL, batch, seq, seq, heads, kv_heads, head_dim, scale, seq, positions};
    cq_parallel_for(cq_attn_grid_of(&a).units, threads_for(batch * heads * seq * seq * head_dim, threads), kernels().forward, &a);
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
    cq_attn_args a = {q, k, v, out, lse, dout, NULL, NULL, dq, dk, dv, (float *)scratch, batch, seq_q, seq_kv, heads, kv_heads, head_dim, scale, seq_kv, positions};
    const int t = threads_for(batch * heads * seq_q * seq_kv * head_dim, threads);
    const cq_attn_kernels f = kernels();
    cq_parallel_for(batch * heads * seq_q, t, f.delta, &a);
    cq_parallel_for(cq_attn_grid_of(&a).units, t, f.dq, &a);
    cq_parallel_for(batch * kv_heads * ((seq_kv + CQ_ATTN_KB - 1) / CQ_ATTN_KB), t, f.dkv, &a);
}
