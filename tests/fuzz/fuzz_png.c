/* fuzz_png — one PNG entry of an ImageFolder tree (kd_imgfolder.h): the
 * probe, the decode and the conversion.  Input: a mode byte (bit 0: resize
 * to 5x7; bit 1: the image twice, in two classes) then the PNG file. */
#include <stdio.h>
#include <stdlib.h>

#include "scratch.h"
#include "kd_imgfolder.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int resize = data[0] & 1, twice = data[0] & 2;
    fuzz_clean();
    char path[512];
    fuzz_write("t/a/x.png", data + 1, size - 1, path, sizeof path);
    if (twice)
        fuzz_write("t/b/y.png", data + 1, size - 1, path, sizeof path);
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
