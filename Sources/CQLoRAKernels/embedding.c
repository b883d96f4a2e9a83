// Embedding lookup: rows of a table gathered by integer ids. A copy per id, so the thread count
// cannot change a bit.
#include "cqlora.h"
#include <string.h>

int64_t cq_embedding(const int32_t *ids, int64_t count, const float *table, int64_t vocab, int64_t dim, float *out, int threads) {
    int64_t first_bad = count;   // min-reduced: the lowest index of an id outside the table
    #pragma omp parallel for schedule(static) num_threads(threads) if(count * dim > 32768) reduction(min: first_bad)
    for (int64_t i = 0; i < count; i++) {
        const int32_t id = ids[i];
        if (id < 0 || (int64_t)id >= vocab) {
            memset(out + i * dim, 0, (size_t)dim * sizeof(float));
            if (i < first_bad) first_bad = i;
            continue;
        }
        memcpy(out + i * dim, table + (int64_t)id * dim, (size_t)dim * sizeof(float));
    }
    return first_bad < count ? first_bad : -1;
}

int64_t cq_embedding_bf16(const int32_t *ids, int64_t count, const uint16_t *table, int64_t vocab, int64_t dim, float *out, int threads) {
    int64_t first_bad = count;
    #pragma omp parallel for schedule(static) num_threads(threads) if(count * dim > 32768) reduction(min: first_bad)
    for (int64_t i = 0; i < count; i++) {
        const int32_t id = ids[i];
        float *y = out + i * dim;
        if (id < 0 || (int64_t)id >= vocab) {
            memset(y, 0, (size_t)dim * sizeof(float));
            if (i < first_bad) first_bad = i;
            continue;
        }
        const uint16_t *row = table + (int64_t)id * dim;
        for (int64_t j = 0; j < dim; j++) {
            const uint32_t bits = (uint32_t)row[j] << 16;   // bf16 is the top half of an f32
            memcpy(y + j, &bits, sizeof bits);
        }
    }
    return first_bad < count ? first_bad : -1;
}
