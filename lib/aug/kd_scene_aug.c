/* kd_scene_aug — flips and scale jitter of a scene with its boxes and mask
 * (kd_det.h), for detect-train. */
#include <math.h>

#include "kd_det.h"

int kd_scene_aug(const uint8_t *img, const uint8_t *mask, int H, int W, int C, const float *boxes,
                 const int32_t *labels, int nb, int flip, float s, uint8_t *oimg, uint8_t *omask, float *oboxes,
                 int32_t *olabels)
{
    double cx = W / 2.0, cy = H / 2.0;
    for (int i = 0; i < H; i++) {
        double sy = (i + 0.5 - cy) / s + cy - 0.5;
        for (int j = 0; j < W; j++) {
            double sx = (j + 0.5 - cx) / s + cx - 0.5;
            if (flip)
                sx = W - 1 - sx;
            uint8_t *o = oimg + ((size_t)i * W + j) * C;
            if (omask) {
                int ny = (int)floor(sy + 0.5), nx = (int)floor(sx + 0.5);
                omask[(size_t)i * W + j] = ny >= 0 && ny < H && nx >= 0 && nx < W ? mask[(size_t)ny * W + nx] : 0;
            }
            int y0 = (int)floor(sy), x0 = (int)floor(sx);
            double fy = sy - y0, fx = sx - x0;
            for (int c = 0; c < C; c++) {
                double v = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) {
                        int y = y0 + dy, x = x0 + dx;
                        if (y < 0 || y >= H || x < 0 || x >= W)
                            continue;
                        v += (dy ? fy : 1 - fy) * (dx ? fx : 1 - fx) * img[((size_t)y * W + x) * C + c];
                    }
                o[c] = (uint8_t)(v + 0.5 > 255 ? 255 : v + 0.5);
            }
        }
    }
    int m = 0;
    for (int k = 0; k < nb; k++) {
        const float *b = boxes + 4 * k;
        double x0 = (b[0] - cx) * s + cx, x1 = (b[0] + b[2] - cx) * s + cx;
        double y0 = (b[1] - cy) * s + cy, y1 = (b[1] + b[3] - cy) * s + cy;
        if (flip) {
            double t = W - x1;
            x1 = W - x0, x0 = t;
        }
        x0 = x0 < 0 ? 0 : x0, y0 = y0 < 0 ? 0 : y0;
        x1 = x1 > W ? W : x1, y1 = y1 > H ? H : y1;
        if (x1 - x0 < 1 || y1 - y0 < 1)
            continue;
        oboxes[4 * m] = (float)x0, oboxes[4 * m + 1] = (float)y0;
        oboxes[4 * m + 2] = (float)(x1 - x0), oboxes[4 * m + 3] = (float)(y1 - y0);
        olabels[m++] = labels[k];
    }
    return m;
}
