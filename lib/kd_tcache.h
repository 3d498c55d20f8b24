/* kd_tcache — the teacher cache: what teacher-extract added to every frame
 * of one augment stream, kept in an HDF5 file (kind "teacher-cache", layout
 * in man/man5/kdpipe-h5.5) so that later runs over the same stream get the
 * same tensors back without running the teacher.
 *
 * The cache is keyed by each frame's seed, epoch, step, batch, row count and
 * per-row `index`; reading checks all of them, because a cache replayed
 * against another stream would otherwise hand students silently wrong
 * teacher outputs.  Reading goes frame by frame (hyperslabs of the rows), so
 * memory does not grow with the cache. */
#ifndef KD_TCACHE_H
#define KD_TCACHE_H

#include <stdint.h>

#include "kd_tensor.h"

#define KD_TCACHE_KIND "teacher-cache"
/* Most tensors one frame may add (teacher-extract adds up to 5 per view). */
#define KD_TCACHE_MAX_TENSORS 256

typedef struct kd_tcache kd_tcache;

/* Provenance written as root attributes. */
typedef struct {
    const char *model;     /* path of the teacher model file */
    const char *arch;      /* its architecture */
    const char *prefix;    /* name prefix of the added tensors */
    const char *program;   /* "teacher-extract 0.1.0" */
    int64_t model_crc32;   /* zlib CRC-32 of the model file's bytes, -1 unknown */
} kd_tcache_prov;

/* ---- writing (teacher-extract -m T --save-cache FILE) ---- */

/* Create path under a temporary name; NULL with kd_err on failure. */
kd_tcache *kd_tcache_create(const char *path, const kd_tcache_prov *p);
/* Store the tensors names[0..n) of frame k (the k-th frame of the stream,
 * from 0) with its keys.  Every frame must add the same names, dtypes and
 * row shapes as frame 0, each with as many rows as the frame's index. */
int kd_tcache_put(kd_tcache *c, const kd_frame *f, int64_t k, const char (*names)[KD_NAME_MAX], int n);
/* Finish: attributes, fsync, rename into place; frees c.  On failure the
 * temporary is removed. */
int kd_tcache_commit(kd_tcache *c);
/* Remove the temporary, free c (NULL is fine). */
void kd_tcache_abort(kd_tcache *c);

/* ---- reading (teacher-extract --from-cache FILE) ---- */

/* Open and validate the layout; NULL with kd_err ("FILE: problem"). */
kd_tcache *kd_tcache_open(const char *path);
/* Check frame k of the stream against the cache (frame count, seed, epoch,
 * step, batch, rows, every index) and add the cached tensors to f in the
 * order the teacher added them (replacing tensors of the same name, as the
 * live teacher does).  -1 with kd_err naming the frame and the field. */
int kd_tcache_add(kd_tcache *c, kd_frame *f, int64_t k);
int64_t kd_tcache_frames(const kd_tcache *c);
/* The model attribute ("" if absent). */
const char *kd_tcache_model(const kd_tcache *c);
void kd_tcache_close(kd_tcache *c);

/* zlib CRC-32 of a file's bytes (the model's fingerprint in the cache). */
int kd_file_crc32(const char *path, int64_t *crc);

#endif
