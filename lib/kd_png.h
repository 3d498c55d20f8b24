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

/* A grid of n images of a detection dataset (u8 [n,H,W,C], C = 1 or 3),
 * or of their masks (masks non-NULL: u8 [n,H,W], value v in colour
 * kd_png_colour(v - 1), 0 black), in RGB, with every box outlined one pixel
 * wide inside its edges in its class's colour.  Boxes of image i are
 * offsets[i]..offsets[i+1]-1 of boxes (x, y, w, h in pixels, clipped to the
 * image) and labels.  16 per row, magnified as kd_png_grid is. */
int kd_png_boxes(const char *path, const uint8_t *images, const uint8_t *masks, int n, int H, int W, int C,
                 const float *boxes, const int32_t *labels, const int64_t *offsets, int scale);
/* The colour of class k (k >= 0), RGB in [0,1]: twelve well-separated
 * colours, repeating. */
void kd_png_colour(int k, float rgb[3]);

#endif
