/* kd_png — PNG files of images and image grids (augment --dump-png,
 * tensor-info --png).  Written atomically through kd_file. */
#ifndef KD_PNG_H
#define KD_PNG_H

#include <stdint.h>

/* 8-bit gray (C = 1) or RGB (C = 3) PNG of pix [h][w][C].  -1 with kd_err. */
int kd_png_write(const char *path, const uint8_t *pix, int h, int w, int C);

/* A grid of ntiles tiles, cols per row; tile i is float [C,th,tw] (NULL: an
 * empty cell), shown as x*std[c] + mean[c] clamped to [0,1] (mean/std NULL:
 * as is), magnified scale times (nearest), 2-pixel dark gaps. */
int kd_png_grid(const char *path, const float *const *tiles, int ntiles, int cols, int C, int th, int tw,
                    int scale, const float *mean, const float *std);

#endif
