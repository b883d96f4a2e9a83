// bf16 compute for the matmuls of a training plan (CompileOptions.computeType = .bfloat16): the
// backward dX = dY·W through a frozen weight (4-bit, decoded on the fly, or f32) and the f32
// lm_head's forward. Operands are rounded to bf16 (nearest even), products accumulate in f32.
// Each function returns 1 when it ran in bf16 and 0 when it did nothing (no AVX512-BF16 on this
// CPU, or the ISA capped by QLORA_ISA / cq_set_isa, or a shape it does not cover): the caller
// then runs its f32 kernel. Results are bitwise identical for any thread count.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "cqlora.h"

/// Whether the bf16 kernels run here (AVX512-BF16 detected and not capped).
int cq_bf16_available(void);

/// dx [M, K] = dy [M, N] · W [N, K] for the 4-bit weight W, never an f32 copy of it.
int cq_matmul_nn_q4_bf16(const float *dy, int64_t M, const cq_qweight *w, float *dx, int threads);
/// dx [M, K] = dy [M, N] · W [N, K] for an f32 W (a frozen lm_head / tied embedding).
int cq_matmul_nn_bf16(const float *dy, int64_t M, const float *w, int64_t N, int64_t K, float *dx, int threads);
/// y [M, N] = x [M, K] · W [N, K]ᵀ for an f32 W, on the panel GEMM with bf16 panels. Runs for
/// M >= CQ_BF16_NT_MIN_M only; scratch: cq_matmul_nt_scratch_bytes(M, K, threads) bytes.
#define CQ_BF16_NT_MIN_M 64
int cq_matmul_nt_bf16(const float *x, int64_t M, const float *w, int64_t N, int64_t K, float *y, void *scratch, int threads);
