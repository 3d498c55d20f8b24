/* fuzz_idx — the IDX reader (kd_idx.h), gzipped or not, whole and with a
 * limit of one item. */
#include "scratch.h"
#include "kd_idx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    fuzz_write("x.idx", data, size, path, sizeof path);
    for (int64_t limit = 0; limit <= 1; limit++) {
        kd_idx x;
        if (fuzz_note("idx", kd_idx_read(&x, path, limit)) == 0)
            kd_idx_free(&x);
    }
    return 0;
}
