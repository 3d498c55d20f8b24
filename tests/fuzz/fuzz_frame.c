/* fuzz_frame — a plain (uncompressed) frame's payload parser (fuzz_frame.h). */
#include "fuzz_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_frame(data, size, 0); }
