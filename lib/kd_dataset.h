/* kd_dataset — writing and reading dataset files (kind "dataset",
 * man/man5/kdpipe-h5.5): /images u8 [N,H,W,C], /labels i32 [N], class
 * names, source, and per-channel mean/std of pixel/255. */
#ifndef KD_DATASET_H
#define KD_DATASET_H

#include <stdint.h>

typedef struct {
    int64_t n;
    int h, w, c;
    uint8_t *images; /* [n,h,w,c] */
    int32_t *labels; /* [n] or NULL */
    int nclasses;
    char **classes;  /* nclasses names (may be NULL: "0".."K-1" are written) */
    const char *source;
} kd_dataset;

/* Validates labels in [0, nclasses), computes mean/std, writes atomically. */
int kd_dataset_write(const kd_dataset *d, const char *path);

/* Per-channel mean and std of pixel/255 (population std). */
void kd_dataset_stats(const uint8_t *images, int64_t npix, int c, float *mean, float *std);

#endif
