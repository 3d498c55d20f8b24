/* kd_imgfolder — an ImageFolder tree of PNG files: SOURCE/<class>/<file>.png,
 * classes and files in byte order of their names, labels by class order.
 * Conversion, the same for every file: output has 3 channels if any image
 * has colour (palette or RGB), else 1; alpha is composited onto black;
 * 16-bit samples are scaled to 8 bits by round(v * 255 / 65535).  Images
 * of different sizes are refused unless resize (rh x rw, bilinear) is set. */
#ifndef KD_IMGFOLDER_H
#define KD_IMGFOLDER_H

#include <stdint.h>

#include "kd_dataset.h"

int kd_imgfolder_read(const char *dir, int64_t limit, int rh, int rw, kd_dataset *d);

#endif
