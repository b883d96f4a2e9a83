// A branch-free expf that the compiler vectorizes: the kernels compiled once per ISA
// (pointwise_<isa>.c, attention_<isa>.c) call it inside plain loops, so one source gives the
// portable (SSE2), AVX2 and AVX-512 code. Contraction is off inside, so every ISA and every
// thread count computes exactly the same bits: the value depends on x alone.
//
// Method (Cephes expf): n = round(x·log2 e) by the 1.5·2^23 trick, r = x − n·ln 2 in two parts
// (Cody–Waite), e^r by a degree-7 polynomial on |r| <= ln 2 / 2, then e^x = e^r·2^(n/2)·2^(n−n/2)
// (two exact power-of-two scalings, so n down to −150 underflows gracefully into subnormals and
// n = 128 overflows to +inf exactly where expf does). x is clamped to [−104, 89] first: below −104
// the result is 0 (as expf rounds it), above 88.72 it is +inf; NaN passes through.
// Accuracy against libm expf: at most 2 ulp over [−87, 88] (FastExpTests sweeps every 97th
// float in that range), and exactly 0 for −inf.
#ifndef CQ_FAST_EXP_H
#define CQ_FAST_EXP_H
#include <stdint.h>
#include <string.h>

static inline __attribute__((always_inline)) float cq_pow2i(int32_t n) {
    const uint32_t bits = (uint32_t)(n + 127) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

// The clamp bounds, and the range reduction and polynomial, shared by cq_fast_expf and
// attention's 16-lane copy (attention_core.h) so the two cannot drift apart: for `c` (a float or
// a vector of floats, already clamped) it declares `n` = round(c·log2 e) and `p` = e^(c − n·ln 2).
// The enclosing function turns contraction off.
#define CQ_FAST_EXP_LO (-104.0f)
#define CQ_FAST_EXP_HI 89.0f
#define CQ_FAST_EXP_CORE(T, c, n, p)                                                       \
    const T n = ((c) * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* 1.5·2^23 rounds */ \
    T p;                                                                                   \
    {                                                                                      \
        const T r_ = ((c) - n * 0.693359375f) - n * -2.12194440e-4f;                       \
        p = 1.9875691500e-4f * r_ + 1.3981999507e-3f;                                      \
        p = p * r_ + 8.3334519073e-3f;                                                     \
        p = p * r_ + 4.1665795894e-2f;                                                     \
        p = p * r_ + 1.6666665459e-1f;                                                     \
        p = p * r_ + 5.0000001201e-1f;                                                     \
        p = (p * (r_ * r_) + r_) + 1.0f;                                                   \
    }

static inline __attribute__((always_inline)) float cq_fast_expf(float x) {
#pragma clang fp contract(off)
    float c = x < CQ_FAST_EXP_LO ? CQ_FAST_EXP_LO : x;
    c = c > CQ_FAST_EXP_HI ? CQ_FAST_EXP_HI : c;
    CQ_FAST_EXP_CORE(float, c, n, p)
    const int32_t ni = (int32_t)n, half = ni >> 1;
    const float y = (p * cq_pow2i(half)) * cq_pow2i(ni - half);
    return x != x ? x : y;
}
#endif
