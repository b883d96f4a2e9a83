// Scalar 4-bit decode of an arbitrary flat element range, plus a fixed-order dot product:
// the portable fallbacks behind the fused kernels (and the head/tail of the SIMD decoders).
#include "kernels_internal.h"

void cq_decode_range_portable(const cq_qweight *w, int64_t e0, int64_t count, float *out) {
    const int64_t bs = w->block_size, end = e0 + count;
    int64_t e = e0;
    while (e < end) {
        const int64_t b = e / bs;
        const int64_t bend = (b + 1) * bs < end ? (b + 1) * bs : end;
        const float a = cq_block_absmax(w, b);
        for (; e < bend; e++) out[e - e0] = w->codebook[cq_nibble_at(w->packed, e)] * a;
    }
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

float cq_dot_portable(const float *a, const float *b, int64_t n) {
    // Eight interleaved partial sums, combined in a fixed tree.
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) s[l] += a[i + l] * b[i + l];
    for (int l = 0; i < n; i++, l++) s[l] += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}
