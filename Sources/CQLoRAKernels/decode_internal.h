// The block walk shared by the 4-bit decoders (decode_portable.c, decode_avx2.c, decode_avx512.c):
// a range of flat elements is cut at block boundaries and each piece goes to the ISA's span
// function with its block scale. Every decoded value is exactly codebook[q] * scale as one f32
// multiply (a SIMD span may multiply the codebook by the scale first and look the product up:
// the same bits), so all ISAs, and whole-weight dequantization and the GEMM drivers, agree.
#pragma once
#include "kernels_internal.h"

/// Decodes `count` consecutive 4-bit codes starting at flat element e (any parity), all in one
/// block with scale a: out[t] = code[nibble(e + t)] * a.
typedef void (*cq_span_fn)(const uint8_t *packed, const float *code, int64_t e, int64_t count, float a,
                           float *out);

/// The start of a span (elements [e, e + count) at block scale a): a span that starts on a low
/// nibble decodes that one element here, so the ISA's loop starts on a whole byte. Returns the
/// span's first byte; e, count and out are advanced past the element.
static inline __attribute__((always_inline)) const uint8_t *cq_span_start(const uint8_t *packed, const float *code,
                                                                         float a, int64_t *e, int64_t *count,
                                                                         float **out) {
    if (*e & 1) {
        *(*out)++ = code[packed[*e >> 1] & 0x0F] * a;
        (*e)++;
        (*count)--;
    }
    return packed + (*e >> 1);
}

/// Decodes `count` codes of the paired order (cqlora.h): code t is (bytes[t] >> shift) & 15,
/// shift 0 for an even block, 4 for an odd one; all in one block with scale a.
typedef void (*cq_pair_span_fn)(const uint8_t *bytes, int shift, const float *code, int64_t count, float a,
                                float *out);

/// Flat elements [e0, e0 + count) of w into out[0, count). The block scale is walked with a
/// cursor (no division per block). Instantiated once per ISA with constant spans (bitsandbytes'
/// order and the paired one), which inline.
static inline __attribute__((always_inline)) void cq_decode_blocks(const cq_qweight *w, int64_t e0, int64_t count,
                                                                   float *out, cq_span_fn span,
                                                                   cq_pair_span_fn pair_span) {
    if (count <= 0) return;
    const int64_t bs = w->block_size, end = e0 + count;
    cq_absmax_cursor cur = cq_cursor_at(w, e0 / bs);
    for (int64_t e = e0; e < end; cq_cursor_next(&cur)) {
        const int64_t bend = (cur.b + 1) * bs < end ? (cur.b + 1) * bs : end;
        if (w->paired) // block b's element t: byte (b / 2)·bs + t, low nibble for even b
            pair_span(w->packed + (cur.b >> 1) * bs + (e - cur.b * bs), (int)(cur.b & 1) * 4, w->codebook, bend - e,
                      cq_cursor_value(&cur), out + (e - e0));
        else
            span(w->packed, w->codebook, e, bend - e, cq_cursor_value(&cur), out + (e - e0));
        e = bend;
    }
}
