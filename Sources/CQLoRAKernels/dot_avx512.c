// AVX-512 fixed-order dot product: two 16-lane FMA chains, a masked tail, a fixed reduction.
#include "dot_simd_inline.h"
#if CQ_X86

__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))) float cq_dot_avx512(const float *a, const float *b,
                                                                                   int64_t n) {
    return cq_dot_avx512_inline(a, b, n);
}
#endif
