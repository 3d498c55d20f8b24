#include "kd_png.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_file.h"

/* libpng reports errors by longjmp; keep everything the handler touches in
 * variables that survive it (volatile or allocated before setjmp). */
static int png_to_file(FILE *f, const uint8_t *pix, int h, int w, int C)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    if (!png)
        return -1;
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, C == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++)
        png_write_row(png, (png_const_bytep)(pix + (size_t)y * w * C));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

int kd_png_write(const char *path, const uint8_t *pix, int h, int w, int C)
{
    if ((C != 1 && C != 3) || h < 1 || w < 1) {
        kd_err_set("%s: cannot write a %dx%dx%d PNG", path, h, w, C);
        return -1;
    }
    kd_file o;
    if (kd_file_open(&o, path) < 0)
        return -1;
    if (png_to_file(o.f, pix, h, w, C) < 0) {
        kd_file_abort(&o);
        kd_err_set("%s: PNG encoding failed", path);
        return -1;
    }
    return kd_file_commit(&o);
}

int kd_png_grid(const char *path, const float *const *tiles, int ntiles, int cols, int C, int th, int tw,
                    int scale, const float *mean, const float *std)
{
    const int gap = 2;
    if (ntiles < 1 || cols < 1 || scale < 1 || th < 1 || tw < 1) {
        kd_err_set("%s: empty grid", path);
        return -1;
    }
    int rows = (ntiles + cols - 1) / cols;
    if (cols > ntiles)
        cols = ntiles;
    int cw = tw * scale, ch = th * scale;
    int W = cols * cw + (cols + 1) * gap, H = rows * ch + (rows + 1) * gap;
    if ((double)W * H * C > 256e6) {
        kd_err_set("%s: grid of %dx%d pixels is too large", path, W, H);
        return -1;
    }
    uint8_t *pix = malloc((size_t)W * H * C);
    if (!pix) {
        kd_err_set("%s: out of memory", path);
        return -1;
    }
    memset(pix, 40, (size_t)W * H * C);
    for (int i = 0; i < ntiles; i++) {
        const float *t = tiles[i];
        if (!t)
            continue;
        int x0 = gap + (i % cols) * (cw + gap), y0 = gap + (i / cols) * (ch + gap);
        for (int y = 0; y < ch; y++)
            for (int x = 0; x < cw; x++)
                for (int c = 0; c < C; c++) {
                    float v = t[((size_t)c * th + y / scale) * tw + x / scale];
                    if (mean && std)
                        v = v * std[c] + mean[c];
                    v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
                    pix[((size_t)(y0 + y) * W + x0 + x) * C + c] = (uint8_t)(v * 255.0f + 0.5f);
                }
    }
    int rc = kd_png_write(path, pix, H, W, C);
    free(pix);
    return rc;
}
