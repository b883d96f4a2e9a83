// Parallel regions on the OpenMP runtime without compiler OpenMP support. SwiftPM refuses
// unsafe flags such as -fopenmp in a package resolved by version, so the kernels call libomp's
// GNU-compatible entry point directly: GOMP_parallel runs fn(data) on a team of threads taken
// from libomp's pool (threads are reused across regions, exactly as `#pragma omp parallel`
// does), and omp_get_thread_num / omp_get_num_threads identify a thread inside it.
#include "kernels_internal.h"

void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);

// ThreadSanitizer (`make check`) does not see inside libomp, which is not instrumented, so it does
// not know that GOMP_parallel's fork and join order every team member's work after the caller's
// writes and before the caller's reads. These annotations state exactly those two edges (and
// nothing else): the caller releases `call` before the fork, each member acquires it on entry and
// releases it on exit, the caller acquires it after the join. No report is suppressed.
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define CQ_TSAN_ACQUIRE(p) __tsan_acquire(p)
#define CQ_TSAN_RELEASE(p) __tsan_release(p)
#endif
#endif
#ifndef CQ_TSAN_ACQUIRE
#define CQ_TSAN_ACQUIRE(p) ((void)(p))
#define CQ_TSAN_RELEASE(p) ((void)(p))
#endif

typedef struct {
    cq_team_fn fn;
    void *ctx;
    int flush; // the caller's denormal mode (float_mode.c), which every member takes for the region
} team_call;

static void team_entry(void *data) {
    const team_call *call = (const team_call *)data;
    CQ_TSAN_ACQUIRE(data);
    const uint32_t own = cq_float_mode_set(call->flush); // pool threads keep their own mode outside
    call->fn(call->ctx, omp_get_thread_num(), omp_get_num_threads());
    cq_float_mode_restore(own);
    CQ_TSAN_RELEASE(data);
}

void cq_parallel(int threads, cq_team_fn fn, void *ctx) {
    if (threads <= 1) {
        fn(ctx, 0, 1);
        return;
    }
    team_call call = {fn, ctx, cq_float_mode_flushes()};
    CQ_TSAN_RELEASE(&call);
    GOMP_parallel(team_entry, &call, (unsigned)threads, 0);
    CQ_TSAN_ACQUIRE(&call);
}

typedef struct {
    cq_range_fn fn;
    void *ctx;
    int64_t n;
} range_call;

static void range_entry(void *data, int t, int nt) {
    const range_call *call = (const range_call *)data;
    const int64_t begin = call->n * t / nt, end = call->n * (t + 1) / nt;
    if (begin < end) call->fn(call->ctx, begin, end);
}

void cq_parallel_for(int64_t n, int threads, cq_range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (threads <= 1 || n == 1) {
        fn(ctx, 0, n);
        return;
    }
    range_call call = {fn, ctx, n};
    cq_parallel(threads < n ? threads : (int)n, range_entry, &call);
}

static void count_member(void *ctx, int thread, int nthreads) {
    (void)thread; (void)nthreads;
    __atomic_fetch_add((int *)ctx, 1, __ATOMIC_RELAXED);
}

int cq_parallel_team_size(int threads) {
    int members = 0;
    cq_parallel(threads, count_member, &members);
    return members;
}
