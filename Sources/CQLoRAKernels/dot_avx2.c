// AVX2 fixed-order dot product: two 8-lane FMA chains, a fixed horizontal sum, a scalar tail.
#include "dot_simd_inline.h"
#if CQ_X86

__attribute__((target("avx2,fma"))) float cq_dot_avx2(const float *a, const float *b, int64_t n) {
    return cq_dot_avx2_inline(a, b, n);
}
#endif
