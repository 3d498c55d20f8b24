/* fuzz_stream — the tensor-stream reader (kd_stream.h) on raw bytes: every
 * frame read until the end marker or the first error.  Most mutations die
 * at the CRC; fuzz_frame and fuzz_frame_z get past it. */
#include <stdio.h>

#include "scratch.h"
#include "kd_stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fmemopen((void *)data, size ? size : 1, "rb");
    if (!f)
        return 0;
    if (!size)
        fgetc(f); /* fmemopen cannot open an empty buffer: empty it */
    kd_reader *r = kd_reader_fopen(f, "fuzz");
    if (r) {
        kd_frame fr;
        kd_frame_init(&fr);
        int rc;
        while ((rc = kd_reader_next(r, &fr)) == 1)
            ;
        fuzz_note("stream", rc < 0);
        kd_frame_free(&fr);
        kd_reader_close(r);
    }
    fclose(f);
    return 0;
}
