// ggml (llama.cpp GGUF) block formats decoded to f32, bit for bit as ggml's reference
// dequantize_row_* and gguf-py's numpy gguf.quants.dequantize (ggml_dequant.c).
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when cq_ggml_dequantize decodes ggml type id `type` (GGML_TYPE_*: F32 0, F16 1, Q4_0 2,
/// Q4_1 3, Q5_0 6, Q5_1 7, Q8_0 8, Q4_K 12, Q6_K 14, BF16 30), else 0.
int cq_ggml_can_dequantize(int32_t type);

/// Decodes `nblocks` consecutive blocks of ggml type `type` (block_size elements in type_size
/// bytes each; 1 element for F32/F16/BF16) from src to out (nblocks * block_size floats). src
/// needs no alignment. Every element is decoded alone, so the result does not depend on
/// `threads`. Returns 0, or -1 when the type is not supported.
int cq_ggml_dequantize(int32_t type, const void *src, int64_t nblocks, float *out, int threads);

#ifdef __cplusplus
}
#endif
