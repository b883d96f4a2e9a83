// Embedding lookup: rows of a table gathered by integer ids. A copy per id, so the thread count
// cannot change a bit.
#include "kernels_internal.h"
#include <string.h>

typedef struct {
    const int32_t *ids;
    const void *table;      // float or bf16 (uint16_t) rows of dim elements
    int bf16;
    int64_t vocab, dim;
    float *out;
} embedding_args;

/// Writes rows [i0, i1); an id outside the table gets a zero row.
static void embedding_range(void *p, int64_t i0, int64_t i1) {
    const embedding_args *e = (const embedding_args *)p;
    const int64_t dim = e->dim;
    for (int64_t i = i0; i < i1; i++) {
        const int32_t id = e->ids[i];
        float *y = e->out + i * dim;
        if (id < 0 || (int64_t)id >= e->vocab) {
            memset(y, 0, (size_t)dim * sizeof(float));
        } else if (e->bf16) {
            const uint16_t *row = (const uint16_t *)e->table + (int64_t)id * dim;
            for (int64_t j = 0; j < dim; j++) {
                const uint32_t bits = (uint32_t)row[j] << 16;   // bf16 is the top half of an f32
                memcpy(y + j, &bits, sizeof bits);
            }
        } else {
            memcpy(y, (const float *)e->table + (int64_t)id * dim, (size_t)dim * sizeof(float));
        }
    }
}

static int64_t gather(embedding_args args, int64_t count, int threads) {
    cq_parallel_for(count, count * args.dim > 32768 ? threads : 1, embedding_range, &args);
    for (int64_t i = 0; i < count; i++) {
        if (args.ids[i] < 0 || (int64_t)args.ids[i] >= args.vocab) return i;
    }
    return -1;
}

int64_t cq_embedding(const int32_t *ids, int64_t count, const float *table, int64_t vocab, int64_t dim, float *out, int threads) {
    return gather((embedding_args){ids, table, 0, vocab, dim, out}, count, threads);
}

int64_t cq_embedding_bf16(const int32_t *ids, int64_t count, const uint16_t *table, int64_t vocab, int64_t dim, float *out, int threads) {
    return gather((embedding_args){ids, table, 1, vocab, dim, out}, count, threads);
}
