// The one place that picks kernels by ISA (cq_detect_isa(), capped by QLORA_ISA / cq_set_isa):
// drivers only call through these tables. Without x86 kernels (CQ_X86 == 0) cq_detect_isa()
// is always portable and no SIMD symbol is referenced.
#include "kernels_internal.h"

cq_gemm_isa cq_gemm_isa_current(void) {
    switch (cq_detect_isa()) {
#if CQ_X86
    case CQ_ISA_AVX512:
        return (cq_gemm_isa){.mrp = CQ_MRP_AVX512, .nr = CQ_NR_AVX512, .kernel = cq_gemm_kernel_avx512,
                             .half = cq_gemm_kernel_half_avx512, .decode = cq_decode_range_avx512,
                             .dot = cq_dot_avx512, .gemv_tile = cq_gemv_tile_avx512,
                             .dq_tables = cq_dq_tables_avx512,
                             .store_t = cq_store_transposed_avx512};
    case CQ_ISA_AVX2:
        return (cq_gemm_isa){.mrp = CQ_MRP_AVX2, .nr = CQ_NR_AVX2, .kernel = cq_gemm_kernel_avx2,
                             .decode = cq_decode_range_avx2, .dot = cq_dot_avx2, .gemv_tile = cq_gemv_tile_avx2,
                             .dq_tables = cq_dq_tables_portable, .store_t = cq_store_transposed_avx2};
#endif
    default:
        return (cq_gemm_isa){.mrp = CQ_MRP_PORTABLE, .nr = CQ_NR_PORTABLE, .kernel = cq_gemm_kernel_portable,
                             .decode = cq_decode_range_portable, .dot = cq_dot_portable,
                             .dq_tables = cq_dq_tables_portable, .store_t = cq_store_transposed_portable};
    }
}

const cq_bf16_isa *cq_bf16_isa_current(void) {
#if CQ_X86
    static const cq_bf16_isa bf16 = {cq_gemm_kernel_bf16, cq_to_bf16, cq_permute_x_bf16, cq_gemv_tile_bf16,
                                     cq_permute_x_bf16_paired};
    if (cq_cpu_has_avx512_bf16()) return &bf16;
#endif
    return NULL;
}

cq_kn_isa cq_kn_isa_current(void) {
    switch (cq_detect_isa()) {
#if CQ_X86
    case CQ_ISA_AVX512:
        return (cq_kn_isa){CQ_MRP_AVX512, CQ_NR_AVX512, cq_kn_kernel_avx512, cq_kn_kernel_half_avx512, cq_decode_range_avx512,
                           cq_store_transposed_avx512};
    case CQ_ISA_AVX2:
        return (cq_kn_isa){CQ_MRP_AVX2, CQ_NR_AVX2, cq_kn_kernel_avx2, NULL, cq_decode_range_avx2, cq_store_transposed_avx2};
#endif
    default:
        return (cq_kn_isa){CQ_MRP_PORTABLE, CQ_NR_PORTABLE, cq_kn_kernel_portable, NULL, cq_decode_range_portable,
                           cq_store_transposed_portable};
    }
}
