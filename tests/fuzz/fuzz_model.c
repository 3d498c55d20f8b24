/* fuzz_model — opening a model file (kd_model_io.h): HDF5 open, the kind
 * and architecture attributes, every parameter and buffer dataset. */
#include "scratch.h"
#include "kd_model_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    fuzz_write("m.h5", data, size, path, sizeof path);
    kd_model *m = kd_model_load(path);
    fuzz_note("model", !m);
    kd_model_free(m);
    fuzz_h5_ids();
    return 0;
}
