// AVX2 and AVX-512 4-bit dequantization (see dequant.c). Compiled for baseline x86-64; each
// function carries its own target attribute and is only called after cq_detect_isa() said so.
// The nibble expansion: 8 packed bytes, zero-extended to 8 qwords b, become 16 dword indices
// (b >> 4, b) via (b >> 4) | (b << 32): the permutes read only the low 4 (AVX-512) or 3 (AVX2)
// bits of each dword, so the high nibble's leftovers need no masking.
#include "quant_internal.h"

#pragma STDC FP_CONTRACT OFF

#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"), always_inline))
#define AVX2_TARGET __attribute__((target("avx2,fma"), always_inline))

// ---- AVX-512: one vpermps over the 16-entry codebook per 16 elements ------------------------

static inline AVX512_TARGET __m512 decode16_avx512(__m128i bytes8, __m512 codebook, __m512 scale) {
    const __m512i b = _mm512_cvtepu8_epi64(bytes8);
    const __m512i idx = _mm512_or_si512(_mm512_srli_epi64(b, 4), _mm512_slli_epi64(b, 32));
    return _mm512_mul_ps(_mm512_permutexvar_ps(idx, codebook), scale);
}

static inline AVX512_TARGET void span_avx512(const uint8_t *packed, const float *code, int64_t j, int64_t count,
                                             float a, float *out) {
    if (count <= 0) return;
    if (j & 1) {
        *out++ = code[packed[j >> 1] & 0x0F] * a;
        j++;
        count--;
    }
    const uint8_t *p = packed + (j >> 1);
    const __m512 codebook = _mm512_loadu_ps(code);
    const __m512 scale = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 64 <= count; i += 64) {
        const __m256i bytes = _mm256_loadu_si256((const __m256i *)(p + i / 2));
        const __m128i lo = _mm256_castsi256_si128(bytes), hi = _mm256_extracti128_si256(bytes, 1);
        _mm512_storeu_ps(out + i, decode16_avx512(lo, codebook, scale));
        _mm512_storeu_ps(out + i + 16, decode16_avx512(_mm_unpackhi_epi64(lo, lo), codebook, scale));
        _mm512_storeu_ps(out + i + 32, decode16_avx512(hi, codebook, scale));
        _mm512_storeu_ps(out + i + 48, decode16_avx512(_mm_unpackhi_epi64(hi, hi), codebook, scale));
    }
    for (; i + 16 <= count; i += 16)
        _mm512_storeu_ps(out + i, decode16_avx512(_mm_loadl_epi64((const __m128i *)(p + i / 2)), codebook, scale));
    if (i < count) { // 1..15 left: masked load of the bytes that exist, masked store
        const int64_t rem = count - i;
        const __mmask16 bytes_mask = (__mmask16)((1u << ((rem + 1) / 2)) - 1);
        const __m128i bytes = _mm_maskz_loadu_epi8(bytes_mask, p + i / 2);
        _mm512_mask_storeu_ps(out + i, (__mmask16)((1u << rem) - 1), decode16_avx512(bytes, codebook, scale));
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
void cq_dequant_range_avx512(const cq_qweight *w, int64_t j0, int64_t j1, float *out) {
    cq_dequant_range_with(w, j0, j1, out, span_avx512);
}

// ---- AVX2: two 8-entry vpermps (codes 0-7, 8-15) blended on bit 3 ---------------------------

static inline AVX2_TARGET __m256 decode8_avx2(uint32_t bytes4, __m256 code_lo, __m256 code_hi, __m256 scale) {
    const __m256i b = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128((int)bytes4));
    const __m256i idx = _mm256_or_si256(_mm256_srli_epi64(b, 4), _mm256_slli_epi64(b, 32));
    const __m256 lo = _mm256_permutevar8x32_ps(code_lo, idx);
    const __m256 hi = _mm256_permutevar8x32_ps(code_hi, idx);
    const __m256 bit3 = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)); // nibble bit 3 -> sign bit
    return _mm256_mul_ps(_mm256_blendv_ps(lo, hi, bit3), scale);
}

static inline AVX2_TARGET void span_avx2(const uint8_t *packed, const float *code, int64_t j, int64_t count, float a,
                                         float *out) {
    if (count <= 0) return;
    if (j & 1) {
        *out++ = code[packed[j >> 1] & 0x0F] * a;
        j++;
        count--;
    }
    const uint8_t *p = packed + (j >> 1);
    const __m256 code_lo = _mm256_loadu_ps(code), code_hi = _mm256_loadu_ps(code + 8);
    const __m256 scale = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= count; i += 16) {
        uint64_t bytes8;
        memcpy(&bytes8, p + i / 2, 8);
        _mm256_storeu_ps(out + i, decode8_avx2((uint32_t)bytes8, code_lo, code_hi, scale));
        _mm256_storeu_ps(out + i + 8, decode8_avx2((uint32_t)(bytes8 >> 32), code_lo, code_hi, scale));
    }
    for (; i + 8 <= count; i += 8) {
        uint32_t bytes4;
        memcpy(&bytes4, p + i / 2, 4);
        _mm256_storeu_ps(out + i, decode8_avx2(bytes4, code_lo, code_hi, scale));
    }
    for (; i + 2 <= count; i += 2) {
        const uint8_t byte = p[i >> 1];
        out[i] = code[byte >> 4] * a;
        out[i + 1] = code[byte & 0x0F] * a;
    }
    if (i < count) out[i] = code[p[i >> 1] >> 4] * a;
}

__attribute__((target("avx2,fma")))
void cq_dequant_range_avx2(const cq_qweight *w, int64_t j0, int64_t j1, float *out) {
    cq_dequant_range_with(w, j0, j1, out, span_avx2);
}
#endif
