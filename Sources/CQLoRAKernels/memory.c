// Process memory helpers for measurements.
#include "cqlora.h"
#if defined(__GLIBC__)
#include <malloc.h>
#endif

void cq_release_free_memory(void) {
#if defined(__GLIBC__)
    malloc_trim(0); // glibc keeps freed heap pages below its trim threshold resident
#endif
}
