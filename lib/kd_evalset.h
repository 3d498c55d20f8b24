/* kd_evalset — a dataset file as normalised float images for evaluation:
 * (pixel/255 - mean) / std with the file's mean/std attributes, resized
 * (bilinear, as augment's eval policy for square images) to h x w when the
 * file's size differs. */
#ifndef KD_EVALSET_H
#define KD_EVALSET_H

#include <stdint.h>

typedef struct {
    int64_t n;
    int c, h, w;
    float *x;       /* [n,c,h,w] */
    int32_t *y;     /* [n] */
} kd_evalset;

/* limit > 0: the first limit images.  h, w <= 0: the file's size. */
int kd_evalset_load(kd_evalset *e, const char *path, int64_t limit, int h, int w);
void kd_evalset_free(kd_evalset *e);

#endif
