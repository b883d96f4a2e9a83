// AVX-512 4-bit decode: 16 packed bytes -> 32 floats with two vpermps over the 16-entry
// codebook pre-scaled by the block's absmax (so each value is exactly codebook[q] * absmax).
#include "kernels_internal.h"
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

AVX512 void cq_decode_range_avx512(const cq_qweight *w, int64_t e0, int64_t count, float *out) {
    const int64_t bs = w->block_size, end = e0 + count;
    int64_t e = e0;
    // Scalar head up to a 32-element boundary; block sizes are multiples of 32, so from there
    // on no 32-element group straddles two blocks.
    int64_t head = (32 - (e & 31)) & 31;
    if (head > count) head = count;
    cq_decode_range_portable(w, e, head, out);
    e += head;
    const __m512 cb = _mm512_loadu_ps(w->codebook);
    cq_absmax_cursor cur = cq_cursor_at(w, e / bs);
    for (; e + 32 <= end; cq_cursor_next(&cur)) {
        const int64_t bend = (cur.b + 1) * bs < end ? (cur.b + 1) * bs : end;
        const __m512 tbl = _mm512_mul_ps(cb, _mm512_set1_ps(cq_cursor_value(&cur)));
        for (; e + 32 <= bend; e += 32) {
            // vpermps reads only the low 4 bits of each index, so no masking is needed.
            const __m128i bytes = _mm_loadu_si128((const __m128i *)(w->packed + (e >> 1)));
            const __m128i hi = _mm_srli_epi16(bytes, 4);
            const __m128i i0 = _mm_unpacklo_epi8(hi, bytes), i1 = _mm_unpackhi_epi8(hi, bytes);
            _mm512_storeu_ps(out + (e - e0), _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(i0), tbl));
            _mm512_storeu_ps(out + (e - e0) + 16, _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(i1), tbl));
        }
    }
    cq_decode_range_portable(w, e, end - e, out + (e - e0));
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

AVX512 float cq_dot_avx512(const float *a, const float *b, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}
