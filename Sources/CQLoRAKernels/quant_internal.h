// Internal to the quantization kernels (quant.c); not part of the API.
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
