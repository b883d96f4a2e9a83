// cq_fused_linear_group: the linears that share one input (q/k/v, gate/up) in one step. At small
// M (decode) every member's GEMV tiles run in one parallel region over x permuted once, so the
// step pays one fork/join and one permutation instead of one per weight; otherwise the members
// run one after another. Each output is computed exactly as cq_fused_linear_ex (or, with x·Aᵀ
// given, cq_fused_linear_given_xa) computes it, so the bits do not change. With silu_mul, the
// SwiGLU gate silu(y0)·y1 is written to out; y0, y1 stay in the scratch unless the caller gives
// them (training keeps them for the backward).
#include "kernels_internal.h"

static size_t floats_bytes(int64_t n) { return cq_align64((size_t)n * sizeof(float)); }

size_t cq_fused_linear_group_scratch_bytes(int64_t M, int count, const int64_t *N, int64_t K, const int32_t *r,
                                           int silu_mul, int threads) {
    if (M <= 0 || count < 1) return 0;
    if (threads < 1) threads = 1;
    size_t bytes = 0, widest = 0;
    for (int i = 0; i < count; i++) {
        const int32_t ri = r[i] > 0 ? r[i] : 0;
        bytes += floats_bytes(M * ri);
        if (silu_mul) bytes += floats_bytes(M * N[i]);
        const size_t one = cq_fused_linear_scratch_bytes(M, N[i], K, ri, threads);
        if (one > widest) widest = one;
    }
    return bytes + widest;
}

void cq_fused_linear_group(const float *x, int64_t M, int count, cq_linear_member *members, int silu_mul, float *out,
                           void *scratch, int threads, int bf16) {
    if (M <= 0 || count < 1 || count > CQ_LINEAR_GROUP_MAX || (silu_mul && count != 2)) return;
    if (threads < 1) threads = 1;
    const int64_t K = members[0].w->cols;
    char *p = (char *)scratch;
    int given[CQ_LINEAR_GROUP_MAX];   // x·Aᵀ handed in by the caller (training)
    for (int i = 0; i < count; i++) {
        cq_linear_member *m = &members[i];
        given[i] = m->xa != NULL;
        if (m->r < 0 || !m->B || (!m->A && !given[i])) m->r = 0;
        if (silu_mul && !m->y) { m->y = (float *)p; p += floats_bytes(M * m->w->rows); }
        if (!given[i]) { m->xa = (float *)p; p += floats_bytes(M * m->r); }
    }
    int done = 0;
    if (M < CQ_GEMV_MAX_M && !bf16) {
        for (int i = 0; i < count; i++)
            if (members[i].r > 0 && !given[i]) cq_lora_down(x, M, K, members[i].A, members[i].r, (float *)members[i].xa, threads);
        done = cq_fused_gemv_group(x, M, count, members, p, threads);
    }
    if (!done)
        for (int i = 0; i < count; i++) {
            const cq_linear_member *m = &members[i];
            if (given[i] && m->r > 0)
                cq_fused_linear_given_xa(x, M, m->w, m->xa, m->B, m->r, m->scaling, m->bias, m->y, p, threads, bf16);
            else
                cq_fused_linear_ex(x, M, m->w, m->A, m->B, m->r, m->scaling, m->bias, m->y, p, threads, bf16);
        }
    if (silu_mul) cq_silu_mul(members[0].y, members[1].y, out, M * members[0].w->rows, threads);
}
