// Internal contract between the pointwise drivers (elementwise.c, backward.c, pointwise.c) and
// the per-ISA pointwise kernels (pointwise_portable.c, pointwise_avx2.c, pointwise_avx512.c, each
// compiled from pointwise_core.h with its own target attribute). Contraction is off in the core,
// so all three give the same bits; the ISA only changes the vector width.
#pragma once
#include "kernels_internal.h"

/// Operands of one pointwise call; each range function reads the fields it needs.
typedef struct {
    const float *a, *b, *c;
    const int32_t *labels;
    float *out, *out2;
    double *row_lse;   // cross-entropy: one log-sum-exp per row
    float s;           // cross-entropy gradient: g / counted
    int64_t width;     // row length of the row-wise kernels
} cq_pw_args;

typedef struct {
    cq_range_fn exp, silu, silu_mul, silu_grad, silu_mul_grad;   // element ranges
    cq_range_fn ce_lse, ce_grad;             // row ranges over [rows, width] logits
} cq_pw_kernels;

#define CQ_PW_DECLARE(isa)                                         \
    void cq_pw_exp_##isa(void *p, int64_t i0, int64_t i1);         \
    void cq_pw_silu_##isa(void *p, int64_t i0, int64_t i1);        \
    void cq_pw_silu_mul_##isa(void *p, int64_t i0, int64_t i1);    \
    void cq_pw_silu_grad_##isa(void *p, int64_t i0, int64_t i1);   \
    void cq_pw_silu_mul_grad_##isa(void *p, int64_t i0, int64_t i1); \
    void cq_pw_ce_lse_##isa(void *p, int64_t r0, int64_t r1);      \
    void cq_pw_ce_grad_##isa(void *p, int64_t r0, int64_t r1);
CQ_PW_DECLARE(portable)
CQ_PW_DECLARE(avx2)
CQ_PW_DECLARE(avx512)

/// The kernels for the ISA in force (cq_detect_isa()).
cq_pw_kernels cq_pw_kernels_current(void);
