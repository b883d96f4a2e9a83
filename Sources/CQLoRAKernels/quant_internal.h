// Internal to the quantization kernels (quant.c, dequant.c, dequant_x86.c); not part of the API.
#pragma once
#include "cqlora.h"

// Every product and sum is rounded on its own (the reference values are plain f32 mul / add):
// never contract code2[q] * absmax2 + offset into an FMA, whatever the target attributes allow.
#pragma STDC FP_CONTRACT OFF

/// conventions.double_quant dequant: absmax' = code2[q] * absmax2 + offset (f32 mul, then f32 add).
static inline float cq_decode_absmax(uint8_t q, const float *code2, float absmax2, float offset) {
    const float scaled = code2[q] * absmax2;
    return scaled + offset;
}

/// Decodes `count` consecutive 4-bit codes starting at flat element j (any parity), all in one
/// block with scale a: out[t] = code[nibble(j + t)] * a.
typedef void (*cq_span_fn)(const uint8_t *packed, const float *code, int64_t j, int64_t count, float a,
                           float *out);

/// Dequantizes flat elements [j0, j1) into out[0, j1 - j0), split at block boundaries (block and
/// absmax2 indices advance incrementally: no division per block). Instantiated once per ISA with
/// a constant `span`, which then inlines.
static inline __attribute__((always_inline)) void cq_dequant_range_with(const cq_qweight *w, int64_t j0, int64_t j1,
                                                                        float *out, cq_span_fn span) {
    if (j1 <= j0) return;
    const int64_t bs = w->block_size;
    const int64_t bs2 = w->block_size2 > 0 ? w->block_size2 : 1;
    int64_t b = j0 / bs, b2 = b / bs2, r2 = b % bs2;
    for (int64_t j = j0; j < j1; b++) {
        const int64_t bend = (b + 1) * bs < j1 ? (b + 1) * bs : j1;
        const float a = w->absmax ? w->absmax[b] : cq_decode_absmax(w->qabsmax[b], w->code2, w->absmax2[b2], w->offset);
        span(w->packed, w->codebook, j, bend - j, a, out + (j - j0));
        j = bend;
        if (++r2 == bs2) { r2 = 0; b2++; }
    }
}

/// One dequantizer per ISA: flat elements [j0, j1) of w into out[0, j1 - j0).
typedef void (*cq_dequant_range_fn)(const cq_qweight *w, int64_t j0, int64_t j1, float *out);
void cq_dequant_range_portable(const cq_qweight *w, int64_t j0, int64_t j1, float *out);
#if defined(__x86_64__)
void cq_dequant_range_avx2(const cq_qweight *w, int64_t j0, int64_t j1, float *out);
void cq_dequant_range_avx512(const cq_qweight *w, int64_t j0, int64_t j1, float *out);
#endif
