/* fuzz_stream — the tensor-stream reader (kd_stream.h) on raw bytes: every
 * frame read until the end marker or the first error.  Most mutations die
 * at the CRC; fuzz_frame and fuzz_frame_z get past it. */
#include "scratch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_read_stream(data, size, "stream");
    return 0;
}
