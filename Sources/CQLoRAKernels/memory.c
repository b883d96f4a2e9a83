// Process memory helpers: large aligned allocations backed by transparent huge pages, and
// returning freed heap pages for measurements.
#define _GNU_SOURCE
#include "cqlora.h"
#include <stdlib.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

void cq_release_free_memory(void) {
#if defined(__GLIBC__)
    malloc_trim(0); // glibc keeps freed heap pages below its trim threshold resident
#endif
}

/// 2 MiB: an x86-64 huge page. Buffers at least this large start on one, so that the pages they
/// cover can be mapped huge; smaller ones are only 64-byte aligned.
#define CQ_HUGE_PAGE ((size_t)2 << 20)

void *cq_alloc_aligned(size_t bytes) {
    if (bytes == 0) bytes = 64;
    const int large = bytes >= CQ_HUGE_PAGE;
    void *p = NULL;
    if (posix_memalign(&p, large ? CQ_HUGE_PAGE : 64, bytes) != 0) return NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    // Decoding streams every 4-bit weight once per token (3.9 GB for a 7B model): with 4 KiB
    // pages that is a TLB miss per 4 KiB. THP is often in `madvise` mode, so ask for it here,
    // before the caller's first touch. Advice only: failure leaves ordinary pages.
    if (large) (void)madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
}

void cq_free_aligned(void *p) { free(p); }
