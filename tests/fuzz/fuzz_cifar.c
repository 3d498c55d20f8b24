/* fuzz_cifar — the CIFAR batch reader (kd_cifar.h).  Input: a mode byte
 * (bit 0: CIFAR-100 names test.bin / fine_label_names.txt, else CIFAR-10's
 * test_batch.bin / batches.meta.txt; bit 1: a names file), a length byte L,
 * L bytes of the names file when bit 1 is set, then the batch. */
#include <stdio.h>

#include "scratch.h"
#include "kd_cifar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int c100 = data[0] & 1, names = data[0] & 2;
    size_t nl = names ? data[1] : 0;
    if (nl > size - 2)
        nl = size - 2;
    fuzz_clean();
    char path[512], dir[512];
    if (names)
        fuzz_write(c100 ? "c/fine_label_names.txt" : "c/batches.meta.txt", data + 2, nl, path, sizeof path);
    fuzz_write(c100 ? "c/test.bin" : "c/test_batch.bin", data + 2 + nl, size - 2 - nl, path, sizeof path);
    snprintf(dir, sizeof dir, "%s/c", fuzz_dir());
    /* the directory (the split's file found by name) and the file itself */
    const char *srcs[2] = {dir, path};
    for (int i = 0; i < 2; i++) {
        kd_dataset d = {0};
        char warn[512];
        if (fuzz_note("cifar", kd_cifar_read(srcs[i], "test", 0, &d, warn, sizeof warn)) == 0)
            kd_cifar_free(&d);
    }
    return 0;
}
