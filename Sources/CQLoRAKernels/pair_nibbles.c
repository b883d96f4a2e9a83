// Conversion between bitsandbytes' nibble order and the paired-blocks order (cqlora.h). A block
// pair occupies the same bytes in both orders, so each pair is converted in place through a
// small copy; pairs are independent and split over threads.
#include "kernels_internal.h"
#include <string.h>

int cq_pairing_supported(int64_t rows, int64_t cols, int32_t block_size) {
    return rows > 0 && block_size >= 64 && block_size % 64 == 0 && cols % (2 * (int64_t)block_size) == 0;
}

/// One pair of blocks (2·bs elements in bs bytes), either direction.
static void convert_pair(uint8_t *p, int64_t bs, int to_paired) {
    uint8_t src[4096]; // block_size <= 4096 (cq_quantize_4bit's limit)
    memcpy(src, p, (size_t)bs);
    if (to_paired) {
        // Byte t: element t (block 2c) low, element bs + t (block 2c+1) high. Element e of the
        // bnb bytes is the high nibble of byte e/2 for even e, the low one for odd e.
        for (int64_t t = 0; t < bs; t += 2) {
            const uint8_t a = src[t / 2], b = src[(bs + t) / 2];
            p[t] = (uint8_t)((a >> 4) | (b & 0xF0));
            p[t + 1] = (uint8_t)((a & 0x0F) | (uint8_t)(b << 4));
        }
    } else {
        for (int64_t t = 0; t < bs; t += 2) {
            const uint8_t u = src[t], v = src[t + 1];
            p[t / 2] = (uint8_t)((u << 4) | (v & 0x0F));
            p[(bs + t) / 2] = (uint8_t)((u & 0xF0) | (v >> 4));
        }
    }
}

typedef struct {
    uint8_t *packed;
    int64_t bs, pairs;
    int to_paired;
} pair_job;

static void pair_worker(void *arg, int t, int nt) {
    const pair_job *j = (const pair_job *)arg;
    for (int64_t c = j->pairs * t / nt, end = j->pairs * (t + 1) / nt; c < end; c++)
        convert_pair(j->packed + c * j->bs, j->bs, j->to_paired);
}

int cq_pair_nibbles(uint8_t *packed, int64_t count, int32_t block_size, int to_paired, int threads) {
    if (block_size <= 0 || block_size > 4096 || block_size % 2 || count < 0 || count % (2 * (int64_t)block_size)) return -1;
    pair_job job = {packed, block_size, count / (2 * (int64_t)block_size), to_paired};
    if (threads <= 1 || job.pairs < 1024) pair_worker(&job, 0, 1);
    else cq_parallel(threads, pair_worker, &job);
    return 0;
}
