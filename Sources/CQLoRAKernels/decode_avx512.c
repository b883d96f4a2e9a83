// AVX-512 4-bit decode: per block, the 16-entry codebook is multiplied by the block scale (so
// each value is exactly codebook[q]·scale); 16 packed bytes -> 32 floats with two vpermps, and
// a masked load / store for the last 1..31 elements of a block piece. Plus the double-quant
// scale tables of the small-M tiles.
#include "decode_internal.h"
#if CQ_X86
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

/// 32 codes from 16 packed bytes: (byte >> 4, byte) pairs in element order. vpermps reads only
/// the low 4 bits of each index, so the bits the 16-bit shift brings in need no masking.
AVX512 static inline __attribute__((always_inline)) void lookup32(__m128i bytes, __m512 tbl, __m512 *v0, __m512 *v1) {
    const __m128i hi = _mm_srli_epi16(bytes, 4);
    *v0 = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(hi, bytes)), tbl);
    *v1 = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_unpackhi_epi8(hi, bytes)), tbl);
}

AVX512 static inline __attribute__((always_inline)) void span(const uint8_t *packed, const float *code, int64_t e,
                                                              int64_t count, float a, float *out) {
    if (count <= 0) return;
    const uint8_t *p = cq_span_start(packed, code, a, &e, &count, &out);
    const __m512 tbl = _mm512_mul_ps(_mm512_loadu_ps(code), _mm512_set1_ps(a));
    __m512 v0, v1;
    int64_t i = 0;
    for (; i + 32 <= count; i += 32) {
        lookup32(_mm_loadu_si128((const __m128i *)(p + i / 2)), tbl, &v0, &v1);
        _mm512_storeu_ps(out + i, v0);
        _mm512_storeu_ps(out + i + 16, v1);
    }
    if (i < count) { // 1..31 left: load only the bytes that exist, store only the elements
        const int64_t rem = count - i;
        lookup32(_mm_maskz_loadu_epi8((__mmask16)((1u << ((rem + 1) / 2)) - 1), p + i / 2), tbl, &v0, &v1);
        const uint32_t keep = (uint32_t)((1ull << rem) - 1);
        _mm512_mask_storeu_ps(out + i, (__mmask16)keep, v0);
        _mm512_mask_storeu_ps(out + i + 16, (__mmask16)(keep >> 16), v1);
    }
}

/// Paired order: 16 bytes -> 16 codes (one vpermps each; it reads only bits 3:0 of an index, so
/// the high nibble needs no mask), the last 1..15 by masked load and store.
AVX512 static inline __attribute__((always_inline)) void pair_span(const uint8_t *bytes, int shift, const float *code,
                                                                   int64_t count, float a, float *out) {
    const __m512 tbl = _mm512_mul_ps(_mm512_loadu_ps(code), _mm512_set1_ps(a));
    const __m128i sh = _mm_cvtsi32_si128(shift);
    int64_t t = 0;
    for (; t + 32 <= count; t += 32) {
        const __m512i i0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(bytes + t)));
        const __m512i i1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(bytes + t + 16)));
        _mm512_storeu_ps(out + t, _mm512_permutexvar_ps(_mm512_srl_epi32(i0, sh), tbl));
        _mm512_storeu_ps(out + t + 16, _mm512_permutexvar_ps(_mm512_srl_epi32(i1, sh), tbl));
    }
    for (; t < count; t += 16) {
        const __mmask16 keep = count - t >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (count - t)) - 1);
        const __m512i i0 = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(keep, bytes + t));
        _mm512_mask_storeu_ps(out + t, keep, _mm512_permutexvar_ps(_mm512_srl_epi32(i0, sh), tbl));
    }
}

AVX512 void cq_decode_range_avx512(const cq_qweight *w, int64_t e0, int64_t count, float *out) {
    cq_decode_blocks(w, e0, count, out, span, pair_span);
}

/// Double-quant scale tables (see kernels_internal.h): 16 vector multiplies and adds per table,
/// the same two roundings as the scalar formula.
AVX512 void cq_dq_tables_avx512(const cq_qweight *w, int64_t b2, int64_t count, float *out) {
    const __m512 offset = _mm512_set1_ps(w->offset);
    for (int64_t t = 0; t < count; t++) {
        const __m512 a2 = _mm512_set1_ps(w->absmax2[b2 + t]);
        for (int j = 0; j < 256; j += 16)
            _mm512_storeu_ps(out + t * 256 + j, _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(w->code2 + j), a2), offset));
    }
}
#endif
