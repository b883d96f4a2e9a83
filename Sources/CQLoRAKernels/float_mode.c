// Denormal handling of the threads that run kernels. x86 cores compute with denormal (subnormal)
// operands or results through microcode assists, ~100x slower per instruction: a QLoRA step of a
// randomly initialised 7B-shaped model spent 80% of its time in the q/k input gradients, whose
// values had underflowed into that range (docs/architecture.md, "Denormals"). Plans therefore run
// with flush-to-zero and denormals-are-zero unless their options ask for IEEE gradual underflow.
#include "kernels_internal.h"
#if defined(__x86_64__)
#include <xmmintrin.h>
#define FLUSH_BITS 0x8040u // MXCSR: FTZ (bit 15), DAZ (bit 6)

uint32_t cq_float_mode_set(int flush) {
    const uint32_t csr = _mm_getcsr();
    _mm_setcsr(flush ? csr | FLUSH_BITS : csr & ~FLUSH_BITS);
    return csr & FLUSH_BITS;
}

void cq_float_mode_restore(uint32_t previous) { _mm_setcsr((_mm_getcsr() & ~FLUSH_BITS) | (previous & FLUSH_BITS)); }

int cq_float_mode_flushes(void) { return (_mm_getcsr() & FLUSH_BITS) == FLUSH_BITS; }

int cq_float_mode_supported(void) { return 1; }
#else
uint32_t cq_float_mode_set(int flush) { (void)flush; return 0; }
void cq_float_mode_restore(uint32_t previous) { (void)previous; }
int cq_float_mode_flushes(void) { return 0; }
int cq_float_mode_supported(void) { return 0; }
#endif
