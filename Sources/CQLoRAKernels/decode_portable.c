// Portable 4-bit decode (plain C, two codes per packed byte), plus the block-scale helpers of
// the small-M tiles.
#include "decode_internal.h"

static inline __attribute__((always_inline)) void span(const uint8_t *packed, const float *code, int64_t e,
                                                       int64_t count, float a, float *out) {
    if (count <= 0) return;
    const uint8_t *p = cq_span_start(packed, code, a, &e, &count, &out);
    int64_t i = 0;
    for (; i + 2 <= count; i += 2) {
        const uint8_t byte = p[i >> 1];
        out[i] = code[byte >> 4] * a;
        out[i + 1] = code[byte & 0x0F] * a;
    }
    if (i < count) out[i] = code[p[i >> 1] >> 4] * a;
}

static inline __attribute__((always_inline)) void pair_span(const uint8_t *bytes, int shift, const float *code,
                                                            int64_t count, float a, float *out) {
    for (int64_t t = 0; t < count; t++) out[t] = code[(bytes[t] >> shift) & 0x0F] * a;
}

void cq_decode_range_portable(const cq_qweight *w, int64_t e0, int64_t count, float *out) {
    cq_decode_blocks(w, e0, count, out, span, pair_span);
}

void cq_block_scales_portable(const cq_qweight *w, int64_t b0, int64_t count, float *out) {
    cq_absmax_cursor c = cq_cursor_at(w, b0);
    for (int64_t i = 0; i < count; i++, cq_cursor_next(&c)) out[i] = cq_cursor_value(&c);
}

void cq_dq_tables_portable(const cq_qweight *w, int64_t b2, int64_t count, float *out) {
    #pragma clang fp contract(off)
    for (int64_t t = 0; t < count; t++)
        for (int i = 0; i < 256; i++) out[t * 256 + i] = w->code2[i] * w->absmax2[b2 + t] + w->offset;
}
