/* kd_tensor — a named, typed, shaped block of memory, and a frame: the set
 * of tensors plus small key=value metadata that one stream record carries.
 *
 * A frame owns its tensors' memory and keeps it across kd_frame_clear(), so
 * a program that reads frame after frame of the same shapes allocates only
 * on the first one. */
#ifndef KD_TENSOR_H
#define KD_TENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef enum { KD_U8 = 1, KD_I32 = 2, KD_I64 = 3, KD_F32 = 4 } kd_dtype;

#define KD_MAX_RANK 8
#define KD_NAME_MAX 64   /* including the terminating NUL */
#define KD_META_MAX 32   /* metadata entries per frame */
#define KD_META_KEY 32
#define KD_META_VAL 128

size_t kd_dtype_size(kd_dtype t);
const char *kd_dtype_name(kd_dtype t);   /* "u8", "i32", "i64", "f32"; "?" */
int kd_dtype_parse(const char *s);        /* -1 if unknown */

typedef struct {
    char name[KD_NAME_MAX];
    kd_dtype dtype;
    int rank;
    int64_t dims[KD_MAX_RANK];
    void *data;
    size_t nbytes; /* product(dims) * dtype size */
    size_t cap;    /* bytes allocated at data */
} kd_tensor;

int64_t kd_tensor_numel(const kd_tensor *t);
/* Is s[0..n) UTF-8 (shortest forms, no surrogates) without NUL, and, when
 * printable is set, without control characters (U+0001..U+001F, U+007F)? */
int kd_utf8_ok(const char *s, size_t n, int printable);
/* Index of the first NaN or infinity among x[0..n), -1 when all are finite. */
int64_t kd_first_nonfinite(const float *x, size_t n);

typedef struct {
    char key[KD_META_KEY];
    char val[KD_META_VAL];
} kd_meta;

typedef struct {
    int n, cap;     /* tensors in use, slots allocated */
    kd_tensor *t;
    int nmeta;
    kd_meta meta[KD_META_MAX];
} kd_frame;

void kd_frame_init(kd_frame *f);
void kd_frame_free(kd_frame *f);
/* Forget tensors and metadata but keep the memory for the next frame. */
void kd_frame_clear(kd_frame *f);

kd_tensor *kd_frame_get(kd_frame *f, const char *name);
const kd_tensor *kd_frame_cget(const kd_frame *f, const char *name);
/* Adds (or replaces, keeping position) a tensor with this name and shape;
 * its data is allocated (reused when large enough), uninitialised.  NULL and
 * kd_err on a bad name/shape or out of memory. */
kd_tensor *kd_frame_add(kd_frame *f, const char *name, kd_dtype dt, int rank, const int64_t *dims);
/* Looks up a tensor and checks its dtype and rank (rank < 0: any); NULL
 * with a kd_err naming the tensor otherwise. */
kd_tensor *kd_frame_need(kd_frame *f, const char *name, kd_dtype dt, int rank);
int kd_frame_remove(kd_frame *f, const char *name);

int kd_frame_meta_set(kd_frame *f, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *kd_frame_meta_get(const kd_frame *f, const char *key);
/* Integer metadata; returns def when absent or not an integer. */
int64_t kd_frame_meta_i64(const kd_frame *f, const char *key, int64_t def);
/* A count in the metadata: *out = def when key is absent; 0; -1 (error
 * "metadata KEY='V' is not an integer >= min") when present but not a
 * decimal integer of at least min. */
int kd_frame_meta_count(const kd_frame *f, const char *key, int64_t min, int64_t def, int64_t *out);

/* Deep copy of src into dst (dst's memory reused). */
int kd_frame_copy(kd_frame *dst, const kd_frame *src);

#endif
