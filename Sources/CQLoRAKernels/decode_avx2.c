// AVX2 4-bit decode: per block, the 16-entry codebook is multiplied by the block scale (so each
// value is exactly codebook[q]·scale); 8 packed bytes -> 16 floats. vpermps on ymm sees 3 index
// bits, so each lookup takes both 8-entry halves of the scaled codebook and blends on bit 3.
#include "decode_internal.h"
#if CQ_X86
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline __attribute__((always_inline)) __m256 lookup16(__m256i idx, __m256 lo, __m256 hi) {
    const __m256 sel = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)); // bit 3 -> sign bit
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, idx), _mm256_permutevar8x32_ps(hi, idx), sel);
}

/// Packed bytes -> one index byte per code in element order: (byte >> 4, byte) pairs. The
/// neighbour's bits that the 16-bit shift brings into bits 4-7 are never read by lookup16.
AVX2 static inline __attribute__((always_inline)) __m128i nibbles(__m128i bytes) {
    return _mm_unpacklo_epi8(_mm_srli_epi16(bytes, 4), bytes);
}

AVX2 static inline __attribute__((always_inline)) void span(const uint8_t *packed, const float *code, int64_t e,
                                                            int64_t count, float a, float *out) {
    if (count <= 0) return;
    const uint8_t *p = cq_span_start(packed, code, a, &e, &count, &out);
    const __m256 s = _mm256_set1_ps(a);
    const __m256 lo = _mm256_mul_ps(_mm256_loadu_ps(code), s), hi = _mm256_mul_ps(_mm256_loadu_ps(code + 8), s);
    int64_t i = 0;
    for (; i + 16 <= count; i += 16) {
        const __m128i idx = nibbles(_mm_loadl_epi64((const __m128i *)(p + i / 2)));
        _mm256_storeu_ps(out + i, lookup16(_mm256_cvtepu8_epi32(idx), lo, hi));
        _mm256_storeu_ps(out + i + 8, lookup16(_mm256_cvtepu8_epi32(_mm_srli_si128(idx, 8)), lo, hi));
    }
    if (i + 8 <= count) {
        int32_t bytes4;
        __builtin_memcpy(&bytes4, p + i / 2, 4);
        _mm256_storeu_ps(out + i, lookup16(_mm256_cvtepu8_epi32(nibbles(_mm_cvtsi32_si128(bytes4))), lo, hi));
        i += 8;
    }
    for (; i + 2 <= count; i += 2) {
        const uint8_t byte = p[i >> 1];
        out[i] = code[byte >> 4] * a;
        out[i + 1] = code[byte & 0x0F] * a;
    }
    if (i < count) out[i] = code[p[i >> 1] >> 4] * a;
}

/// Paired order: 8 bytes -> 8 codes per lookup16 (which reads only bits 3:0, so the high nibble
/// needs no mask), the last 1..7 in scalar code.
AVX2 static inline __attribute__((always_inline)) void pair_span(const uint8_t *bytes, int shift, const float *code,
                                                                 int64_t count, float a, float *out) {
    const __m256 s = _mm256_set1_ps(a);
    const __m256 lo = _mm256_mul_ps(_mm256_loadu_ps(code), s), hi = _mm256_mul_ps(_mm256_loadu_ps(code + 8), s);
    const __m128i sh = _mm_cvtsi32_si128(shift);
    int64_t t = 0;
    for (; t + 16 <= count; t += 16) {
        const __m128i b = _mm_loadu_si128((const __m128i *)(bytes + t));
        const __m256i i0 = _mm256_srl_epi32(_mm256_cvtepu8_epi32(b), sh);
        const __m256i i1 = _mm256_srl_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)), sh);
        _mm256_storeu_ps(out + t, lookup16(i0, lo, hi));
        _mm256_storeu_ps(out + t + 8, lookup16(i1, lo, hi));
    }
    for (; t < count; t++) out[t] = code[(bytes[t] >> shift) & 0x0F] * a;
}

AVX2 void cq_decode_range_avx2(const cq_qweight *w, int64_t e0, int64_t count, float *out) {
    cq_decode_blocks(w, e0, count, out, span, pair_span);
}
#endif
