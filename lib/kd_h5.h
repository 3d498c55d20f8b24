/* kd_h5 — HDF5 files at rest (man/man5/kdpipe-h5.5 has the layouts).
 *
 * Every kdpipe file has two root attributes: kdpipe_format (integer, checked
 * on open: newer than KD_H5_FORMAT is refused) and kdpipe_kind ("dataset",
 * "features", "model", "detections", "classifier").  Datasets are chunked,
 * shuffle+deflate compressed with a Fletcher-32 checksum on every chunk (a
 * flipped byte is an error, never a silently changed value), and extendible
 * along axis 0; files use the HDF5 1.8 format, whose object headers are
 * checksummed.  Attributes are in lib/io/kd_h5_attr.c.
 *
 * HDF5's own error printing is silenced; failures come back as -1 (or a
 * negative hid_t) with a kd_err message naming the file and the dataset.
 * Files are created under a temporary name and renamed by kd_h5_commit(). */
#ifndef KD_H5_H
#define KD_H5_H

#include <hdf5.h>
#include <stdint.h>

#include "kd_tensor.h"

#define KD_H5_FORMAT 1

typedef struct {
    hid_t id;
    char path[4096]; /* final name */
    char tmp[4200];  /* temporary name while writing; "" when opened for reading */
} kd_h5;

/* Create path (via a temporary name) with the format and kind attributes. */
int kd_h5_create(kd_h5 *h, const char *path, const char *kind);
/* Close, fsync and rename into place.  On failure the temporary is removed. */
int kd_h5_commit(kd_h5 *h);
/* Close and remove the temporary file. */
void kd_h5_abort(kd_h5 *h);
/* Open read-only; kind NULL accepts any kdpipe file.  Refuses non-HDF5 files,
 * files without kdpipe_format, newer formats and other kinds, with messages. */
int kd_h5_open(kd_h5 *h, const char *path, const char *kind);
/* Read-write open of an existing kdpipe file, in place (no rename). */
int kd_h5_open_rw(kd_h5 *h, const char *path, const char *kind);
void kd_h5_close(kd_h5 *h);
/* The kind attribute of an open file ("" if none). */
const char *kd_h5_kind(const kd_h5 *h);
/* Is path an HDF5 file at all (by signature)? */
int kd_h5_is_hdf5(const char *path);

/* Does a dataset (or group) of this name exist?  Intermediate groups in
 * names like "a/b/c" are created as needed on write. */
int kd_h5_exists(const kd_h5 *h, const char *name);

/* Create an extendible dataset of rank >= 1 whose axis 0 starts at 0 rows;
 * dims[0] is ignored; chunk0 rows per chunk (0: choose ~1 MiB). */
int kd_h5_create_ext(kd_h5 *h, const char *name, kd_dtype dt, int rank, const int64_t *dims, int64_t chunk0);
/* Append n0 rows (each of the dataset's row shape) from data. */
int kd_h5_append(kd_h5 *h, const char *name, kd_dtype dt, const void *data, int64_t n0);
/* Write a whole dataset at once (chunked + compressed when large enough;
 * rank 0 allowed for scalars). */
int kd_h5_write(kd_h5 *h, const char *name, kd_dtype dt, int rank, const int64_t *dims, const void *data);

/* Shape and type of a dataset; rank up to KD_MAX_RANK. */
int kd_h5_info(const kd_h5 *h, const char *name, kd_dtype *dt, int *rank, int64_t *dims);
/* Like kd_h5_info, but fails with a clear message unless the dataset has this
 * rank and these dims (a dim of -1 in want matches anything); dims gets the
 * actual shape. */
int kd_h5_expect(const kd_h5 *h, const char *name, int rank, const int64_t *want, int64_t *dims);
/* Read rows [start, start+count) along axis 0 converted to dt (HDF5 converts
 * numeric types).  Whole dataset: start 0, count dims[0]; rank 0: count 1. */
int kd_h5_read(const kd_h5 *h, const char *name, kd_dtype dt, int64_t start, int64_t count, void *buf);

/* Attributes on the root (obj NULL) or on a dataset/group by name. */
int kd_h5_attr_set_str(kd_h5 *h, const char *obj, const char *name, const char *val);
int kd_h5_attr_set_i64(kd_h5 *h, const char *obj, const char *name, int64_t val);
int kd_h5_attr_set_f64(kd_h5 *h, const char *obj, const char *name, double val);
int kd_h5_attr_set_f32v(kd_h5 *h, const char *obj, const char *name, const float *v, int n);
/* A list of strings as one attribute (variable-length strings). */
int kd_h5_attr_set_strv(kd_h5 *h, const char *obj, const char *name, const char *const *v, int n);
int kd_h5_attr_has(const kd_h5 *h, const char *obj, const char *name);
int kd_h5_attr_get_str(const kd_h5 *h, const char *obj, const char *name, char *buf, size_t len);
int kd_h5_attr_get_i64(const kd_h5 *h, const char *obj, const char *name, int64_t *val);
int kd_h5_attr_get_f64(const kd_h5 *h, const char *obj, const char *name, double *val);
/* Reads up to max floats; returns the count, -1 on error. */
int kd_h5_attr_get_f32v(const kd_h5 *h, const char *obj, const char *name, float *v, int max);
/* Strings: *v is malloc'ed array of malloc'ed strings; returns count or -1. */
int kd_h5_attr_get_strv(const kd_h5 *h, const char *obj, const char *name, char ***v);
void kd_strv_free(char **v, int n);

/* Names of all datasets below the root, depth first, "a/b/c" form; calls fn
 * for each; stops at a non-zero return. */
int kd_h5_walk(const kd_h5 *h, int (*fn)(const char *name, void *ctx), void *ctx);

#endif
