/* fuzz_png — one PNG entry of an ImageFolder tree (kd_imgfolder.h): the
 * probe, the decode and the conversion.  Input: a mode byte (bit 0: resize
 * to 5x7; bit 1: the image twice, in two classes; bit 2: CRCs as given)
 * then the PNG file, whose chunk CRCs the harness recomputes unless bit 2
 * is set, so that mutations reach the decoder instead of libpng's CRC
 * check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "scratch.h"
#include "kd_imgfolder.h"

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

/* Every complete chunk after the signature gets its correct CRC. */
static void fix_crcs(uint8_t *p, size_t n)
{
    for (size_t i = 8; i + 12 <= n;) {
        uint32_t len = be32(p + i);
        if (len > n - i - 12)
            break;
        uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), p + i + 4, len + 4);
        for (int k = 0; k < 4; k++)
            p[i + 8 + len + k] = (uint8_t)(crc >> (24 - 8 * k));
        i += 12 + (size_t)len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int resize = data[0] & 1, twice = data[0] & 2;
    uint8_t *png = malloc(size);
    if (!png)
        return 0;
    memcpy(png, data + 1, size - 1);
    if (!(data[0] & 4))
        fix_crcs(png, size - 1);
    fuzz_clean();
    char path[512];
    fuzz_write("t/a/x.png", png, size - 1, path, sizeof path);
    if (twice)
        fuzz_write("t/b/y.png", png, size - 1, path, sizeof path);
    free(png);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/t", fuzz_dir());
    kd_dataset d = {0};
    if (fuzz_note("png", kd_imgfolder_read(dir, 0, resize ? 5 : 0, resize ? 7 : 0, &d)) == 0) {
        free(d.images);
        free(d.labels);
        for (int i = 0; i < d.nclasses; i++)
            free(d.classes[i]);
        free(d.classes);
    }
    return 0;
}
