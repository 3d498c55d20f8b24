/* kd_idx — IDX files (the MNIST / Fashion-MNIST format), gzipped or not.
 * Magic: two zero bytes, a type byte (0x08 = u8), a rank byte, then rank
 * big-endian u32 dimensions, then the data. */
#ifndef KD_IDX_H
#define KD_IDX_H

#include <stdint.h>

typedef struct {
    int rank;
    int64_t dims[4];
    uint8_t *data; /* malloc'ed, product(dims) bytes */
} kd_idx;

/* Reads a whole u8 IDX file of rank 1..4 (gzip detected by zlib);
 * limit > 0 reads only the first `limit` items along axis 0. */
int kd_idx_read(kd_idx *x, const char *path, int64_t limit);
void kd_idx_free(kd_idx *x);

#endif
