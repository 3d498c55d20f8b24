/* Pictures of detection datasets: images or masks with their boxes
 * (tensor-info --png; lib/kd_png.h). */
#include <math.h>
#include <stdlib.h>

#include "kd_err.h"
#include "kd_png.h"

void kd_png_colour(int k, float rgb[3])
{
    static const unsigned char pal[12][3] = {{230, 25, 75},  {60, 180, 75},  {255, 225, 25}, {0, 130, 200},
                                             {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230},
                                             {210, 245, 60}, {250, 190, 212}, {0, 128, 128}, {170, 110, 40}};
    const unsigned char *c = pal[(k < 0 ? 0 : k) % 12];
    for (int i = 0; i < 3; i++)
        rgb[i] = c[i] / 255.0f;
}

static void outline(float *t, int H, int W, const float *b, const float rgb[3])
{
    int x0 = (int)floorf(b[0]), y0 = (int)floorf(b[1]);
    int x1 = (int)ceilf(b[0] + b[2]) - 1, y1 = (int)ceilf(b[1] + b[3]) - 1;
    x0 = x0 < 0 ? 0 : x0, y0 = y0 < 0 ? 0 : y0;
    x1 = x1 >= W ? W - 1 : x1, y1 = y1 >= H ? H - 1 : y1;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++)
            if (y == y0 || y == y1 || x == x0 || x == x1)
                for (int c = 0; c < 3; c++)
                    t[((size_t)c * H + y) * W + x] = rgb[c];
}

int kd_png_boxes(const char *path, const uint8_t *images, const uint8_t *masks, int n, int H, int W, int C,
                 const float *boxes, const int32_t *labels, const int64_t *offsets, int scale)
{
    if (n < 1 || (C != 1 && C != 3)) {
        kd_err_set("%s: cannot draw %d images of %d channels", path, n, C);
        return -1;
    }
    const size_t px = (size_t)H * W;
    float *fl = malloc(sizeof(float) * 3 * px * (size_t)n);
    const float **tiles = malloc(sizeof *tiles * (size_t)n);
    if (!fl || !tiles) {
        free(fl), free(tiles);
        kd_err_set("%s: out of memory", path);
        return -1;
    }
    for (int b = 0; b < n; b++) {
        float *t = fl + 3 * px * (size_t)b;
        for (size_t i = 0; i < px; i++) {
            float rgb[3] = {0, 0, 0};
            if (masks) {
                uint8_t v = masks[px * (size_t)b + i];
                if (v)
                    kd_png_colour(v - 1, rgb);
            } else
                for (int c = 0; c < 3; c++)
                    rgb[c] = images[(px * (size_t)b + i) * C + (C == 3 ? c : 0)] / 255.0f;
            for (int c = 0; c < 3; c++)
                t[(size_t)c * px + i] = rgb[c];
        }
        for (int64_t q = offsets[b]; q < offsets[b + 1]; q++) {
            float rgb[3];
            kd_png_colour(labels[q], rgb);
            outline(t, H, W, boxes + 4 * q, rgb);
        }
        tiles[b] = t;
    }
    int rc = kd_png_grid(path, tiles, n, n < 16 ? n : 16, 3, H, W, scale, NULL, NULL);
    free(fl), free(tiles);
    return rc;
}
