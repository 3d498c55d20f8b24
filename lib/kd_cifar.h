/* kd_cifar — CIFAR-10 / CIFAR-100 binary batches (the "binary version" of
 * https://www.cs.toronto.edu/~kriz/cifar.html): records of a label byte
 * (CIFAR-100: coarse then fine label byte) and 3072 bytes of 32x32 pixels,
 * channel-planar (R plane, G plane, B plane), read into a kd_dataset
 * (HWC, 3 channels; CIFAR-100 keeps the fine label).
 *
 * src is a directory (train: data_batch_1..5.bin, else train.bin as
 * CIFAR-100; test: test_batch.bin, else test.bin) or one .bin file
 * (train.bin / test.bin by name are CIFAR-100).  Class names come from
 * batches.meta.txt (CIFAR-10) or fine_label_names.txt (CIFAR-100) beside the
 * batches, else the built-in CIFAR-10 names, else none (numeric). */
#ifndef KD_CIFAR_H
#define KD_CIFAR_H

#include <stddef.h>
#include <stdint.h>

#include "kd_dataset.h"

/* split "train" or "test"; limit > 0: the first limit records.  On success
 * d->images, d->labels and d->classes (nclasses strings or NULL) are
 * malloc'ed (kd_cifar_free), d->source is src, and warn holds "" or a
 * warning for the user (a names file with the wrong number of names).
 * -1 with kd_err on a missing or malformed file or a label out of range. */
int kd_cifar_read(const char *src, const char *split, int64_t limit, kd_dataset *d, char *warn, size_t warn_len);
void kd_cifar_free(kd_dataset *d);

#endif
