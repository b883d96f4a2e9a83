// Run-time SIMD detection: the best ISA this CPU has, capped by QLORA_ISA or cq_set_isa (always
// portable in a build without the x86 kernels, CQ_X86 == 0). dispatch.c maps it to kernels.
#include "kernels_internal.h"
#include <stdlib.h>
#include <string.h>

static int g_isa = -1;

static cq_isa detect(void) {
#if CQ_X86
    __builtin_cpu_init();
    cq_isa best = CQ_ISA_PORTABLE;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = CQ_ISA_AVX2;
    if (best == CQ_ISA_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        best = CQ_ISA_AVX512;
    const char *cap = getenv("QLORA_ISA");
    if (cap) {
        cq_isa limit = best;
        if (strcmp(cap, "portable") == 0) limit = CQ_ISA_PORTABLE;
        else if (strcmp(cap, "avx2") == 0) limit = CQ_ISA_AVX2;
        else if (strcmp(cap, "avx512") == 0) limit = CQ_ISA_AVX512;
        if (limit < best) best = limit;
    }
    return best;
#else
    return CQ_ISA_PORTABLE;
#endif
}

cq_isa cq_detect_isa(void) {
    int isa = __atomic_load_n(&g_isa, __ATOMIC_ACQUIRE);
    if (isa < 0) {
        isa = (int)detect();
        __atomic_store_n(&g_isa, isa, __ATOMIC_RELEASE);
    }
    return (cq_isa)isa;
}

cq_isa cq_set_isa(cq_isa isa) {
    cq_isa hw = detect();
    if (isa > hw) isa = hw;
    __atomic_store_n(&g_isa, (int)isa, __ATOMIC_RELEASE);
    return isa;
}

const char *cq_isa_name(cq_isa isa) {
    switch (isa) {
    case CQ_ISA_AVX512: return "avx512";
    case CQ_ISA_AVX2: return "avx2";
    default: return "portable";
    }
}

int cq_cpu_has_avx512_bf16(void) {
#if CQ_X86
    // CPUID leaf 7 sub-leaf 1, EAX bit 5 = AVX512_BF16.
    unsigned int eax = 7, ebx, ecx = 1, edx;
    __asm__ volatile("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
    return (eax >> 5) & 1 && cq_detect_isa() == CQ_ISA_AVX512;
#else
    return 0;
#endif
}
