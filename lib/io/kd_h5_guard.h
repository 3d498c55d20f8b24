/* kd_h5_guard — private to kd_h5.c: validation of a dataset's storage
 * before HDF5 reads it (kd_h5_guard.c). */
#ifndef KD_H5_GUARD_H
#define KD_H5_GUARD_H

#include <hdf5.h>

#include "kd_h5.h"

/* 0 every element has storage; 1 none has; 2 some chunks are missing. */
int kd_h5_unwritten(hid_t ds, int rank, const hsize_t *d);
/* 0, or -1 with kd_err: rows [start, start+count) of ds may be read. */
int kd_h5_storage_ok(const kd_h5 *h, hid_t ds, hid_t sp, const char *name, int64_t start, int64_t count);

#endif
