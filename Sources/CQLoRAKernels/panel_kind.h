// The element kinds the panel GEMM driver (panel_gemm.c) is parameterised by (panel_kinds.c):
// f32 compute with the ISA's f32 micro-kernel, or bf16 compute (AVX512-BF16). The driver owns
// the partition, K blocking, scratch layout, LoRA block and epilogue, so both kinds sum every
// output in the same order whatever the thread count.
#pragma once
#include "kernels_internal.h"

typedef struct {
    int mrp, nr;                     // x panel width, weight rows per micro-tile
    cq_gemm_kernel_fn kernel, half;  // half: optional mrp/2-wide last x panel
    int kstep;                       // k values per 4-byte x step: 1 (f32) or 2 (bf16 pair)
    size_t wsize;                    // bytes per weight panel element: 4 (f32) or 2 (bf16)
    /// x steps [0, ceil(n / kstep)) of one x row at dst[s * wd]: v[0..n) (each times *scale when
    /// scale is not NULL), zero-padded to whole steps; v == NULL writes zeros.
    void (*pack_x)(const float *v, int64_t n, const float *scale, void *dst, int wd);
    /// bf16 panel: one weight panel row from n f32 values (rounded, zero-padded to whole pairs).
    /// NULL for an f32 panel (the values are decoded or copied straight into it).
    void (*to_bf16)(const float *v, int64_t n, uint16_t *dst);
    cq_decode_fn decode;
    cq_store_transposed_fn store_t; // the epilogue (f32 ct to y), the ISA's
} cq_panel_kind;

/// The f32 kind of the ISA in force (cq_gemm_isa_current()).
cq_panel_kind cq_panel_kind_f32(void);
/// The bf16 kind; needs cq_bf16_isa_current() != NULL.
cq_panel_kind cq_panel_kind_bf16(const cq_bf16_isa *isa);
