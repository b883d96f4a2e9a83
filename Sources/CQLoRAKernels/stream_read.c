// The streaming-read ceiling the benchmarks compare memory-bound kernels with: every byte of a
// buffer loaded once, with the widest loads the CPU has (a ceiling measured with 16-byte loads
// read DRAM up to 25% slower on this project's Xeon), split over threads as the kernels are.
#include "kernels_internal.h"
#if CQ_X86
#include <immintrin.h>
#endif

typedef struct {
    const uint8_t *p;
    size_t lines; // 64-byte lines
    cq_isa isa;
    uint64_t sums[64];
} read_job;

#if CQ_X86
__attribute__((target("avx512f"))) static uint64_t read_avx512(const uint8_t *p, size_t lines) {
    __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
    size_t i = 0;
    for (; i + 4 <= lines; i += 4) {
        a = _mm512_xor_si512(a, _mm512_load_si512(p + 64 * i));
        b = _mm512_xor_si512(b, _mm512_load_si512(p + 64 * i + 64));
        c = _mm512_xor_si512(c, _mm512_load_si512(p + 64 * i + 128));
        d = _mm512_xor_si512(d, _mm512_load_si512(p + 64 * i + 192));
    }
    for (; i < lines; i++) a = _mm512_xor_si512(a, _mm512_load_si512(p + 64 * i));
    uint64_t lanes[8];
    _mm512_storeu_si512((void *)lanes, _mm512_xor_si512(_mm512_xor_si512(a, b), _mm512_xor_si512(c, d)));
    return lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3] ^ lanes[4] ^ lanes[5] ^ lanes[6] ^ lanes[7];
}

__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t *p, size_t lines) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i < lines; i++) {
        a = _mm256_xor_si256(a, _mm256_load_si256((const __m256i *)(p + 64 * i)));
        b = _mm256_xor_si256(b, _mm256_load_si256((const __m256i *)(p + 64 * i + 32)));
        if (++i >= lines) break;
        c = _mm256_xor_si256(c, _mm256_load_si256((const __m256i *)(p + 64 * i)));
        d = _mm256_xor_si256(d, _mm256_load_si256((const __m256i *)(p + 64 * i + 32)));
    }
    const __m256i s = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    return (uint64_t)(_mm256_extract_epi64(s, 0) ^ _mm256_extract_epi64(s, 1) ^ _mm256_extract_epi64(s, 2) ^
                      _mm256_extract_epi64(s, 3));
}
#endif

static uint64_t read_portable(const uint8_t *p, size_t lines) {
    const uint64_t *q = (const uint64_t *)(const void *)p;
    uint64_t s = 0;
    for (size_t i = 0; i < lines * 8; i++) s ^= q[i];
    return s;
}

static void read_worker(void *arg, int t, int nt) {
    read_job *j = (read_job *)arg;
    const size_t l0 = j->lines * (size_t)t / (size_t)nt, l1 = j->lines * (size_t)(t + 1) / (size_t)nt;
    const uint8_t *p = j->p + 64 * l0;
    uint64_t s;
    switch (j->isa) {
#if CQ_X86
    case CQ_ISA_AVX512: s = read_avx512(p, l1 - l0); break;
    case CQ_ISA_AVX2: s = read_avx2(p, l1 - l0); break;
#endif
    default: s = read_portable(p, l1 - l0); break;
    }
    if (t < 64) j->sums[t] = s;
}

uint64_t cq_stream_read(const void *p, size_t bytes, int threads) {
    if (threads > 64) threads = 64;
    read_job job = {(const uint8_t *)p, bytes / 64, cq_detect_isa(), {0}};
    cq_parallel(threads < 1 ? 1 : threads, read_worker, &job);
    uint64_t s = 0;
    for (int t = 0; t < 64; t++) s ^= job.sums[t];
    return s;
}
