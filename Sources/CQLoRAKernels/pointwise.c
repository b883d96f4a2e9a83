// Picks the pointwise kernels (pointwise_core.h: exp, SiLU and its gradient, the SwiGLU gate,
// cross-entropy) for the ISA in force; every ISA gives the same bits (contraction off, fixed lanes).
#include "pointwise_internal.h"

#define CQ_PW_TABLE(isa)                                                                  \
    (cq_pw_kernels) { cq_pw_exp_##isa, cq_pw_silu_##isa, cq_pw_silu_mul_##isa, cq_pw_silu_grad_##isa,        \
                      cq_pw_silu_mul_grad_##isa, cq_pw_ce_lse_##isa, cq_pw_ce_grad_##isa }

cq_pw_kernels cq_pw_kernels_current(void) {
    switch (cq_detect_isa()) {
#if CQ_X86
    case CQ_ISA_AVX512: return CQ_PW_TABLE(avx512);
    case CQ_ISA_AVX2: return CQ_PW_TABLE(avx2);
#endif
    default: return CQ_PW_TABLE(portable);
    }
}
