/* fuzz_frame_z — a deflated frame: the inflater and then the payload parser
 * (fuzz_frame.h). */
#include "fuzz_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_frame(data, size, 1); }
