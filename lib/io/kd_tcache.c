/* The teacher cache (lib/kd_tcache.h; layout in man/man5/kdpipe-h5.5):
 *
 *   /frames            i64 [F,6]  per frame: seed, epoch, step, batch, rows, offset
 *   /index             i64 [R]    per row: the frame's `index` (dataset row)
 *   /tensors/<name>    [R,...]    per added tensor, its rows, frame after frame
 *   root attributes    kdpipe_kind "teacher-cache", tensors (names, in the
 *                      order they were added), ntensors, frames, rows,
 *                      model, model_crc32, arch, prefix, epochs, batches, program
 *
 * Frame k's rows are [offset, offset+rows) of /index and of every tensor. */
#include "kd_tcache.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "kd_err.h"
#include "kd_h5.h"
#include "kd_names.h"
#include "kd_stream.h"

enum { COL_SEED, COL_EPOCH, COL_STEP, COL_BATCH, COL_ROWS, COL_OFFSET, NCOL };
static const char *const col_names[NCOL] = {"seed", "epoch", "step", "batch", "rows", "offset"};

#define FRAMES_DS "frames"
#define INDEX_DS "index"
#define TENSORS_GROUP "tensors/"
#define MISMATCH "(a cache belongs to one augment stream)"
/* A chunk of at least this many bytes: small chunks cost index overhead and
 * compress badly, large ones are inflated whole for every frame read. */
#define CHUNK_MIN_BYTES (64 << 10)

typedef struct {
    char name[KD_NAME_MAX];
    kd_dtype dt;
    int rank;
    int64_t dims[KD_MAX_RANK]; /* dims[0] unused: rows vary per frame */
    size_t row_bytes;
} slot;

struct kd_tcache {
    kd_h5 h;
    int writing;
    int nt;
    slot t[KD_TCACHE_MAX_TENSORS];
    int64_t frames, rows; /* written so far, or held by the file */
    int64_t epochs, batches;
    int64_t *idx;         /* reader: one frame's cached index */
    size_t idxcap;
    char model[1024];
};

static void ds_name(char *buf, size_t len, const char *tensor)
{
    snprintf(buf, len, "%s%s", TENSORS_GROUP, tensor);
}

/* The frame's keys as stored: the seed as its unsigned bits, absent values -1. */
static void frame_keys(const kd_frame *f, int64_t *v)
{
    const char *s = kd_frame_meta_get(f, KD_META_SEED);
    char *end = NULL;
    errno = 0;
    unsigned long long seed = s ? strtoull(s, &end, 10) : 0;
    v[COL_SEED] = s && !errno && end != s && !*end ? (int64_t)seed : -1;
    v[COL_EPOCH] = kd_frame_meta_i64(f, KD_META_EPOCH, -1);
    v[COL_STEP] = kd_frame_meta_i64(f, KD_META_STEP, -1);
    v[COL_BATCH] = kd_frame_meta_i64(f, KD_META_BATCH, -1);
}

static const kd_tensor *frame_index(const kd_frame *f, int64_t k)
{
    const kd_tensor *x = kd_frame_cget(f, KD_NAME_INDEX);
    if (!x || x->dtype != KD_I64 || x->rank != 1) {
        kd_err_set("frame %" PRId64 " has no '%s' tensor (i64 [B]): a teacher cache is keyed by it", k,
                   KD_NAME_INDEX);
        return NULL;
    }
    return x;
}

static size_t row_bytes(kd_dtype dt, int rank, const int64_t *dims)
{
    size_t b = kd_dtype_size(dt);
    for (int i = 1; i < rank; i++)
        b *= (size_t)dims[i];
    return b;
}

static int64_t chunk_rows(int64_t frame_rows, size_t rb)
{
    int64_t per = frame_rows > 0 ? frame_rows : 1;
    int64_t k = (int64_t)((CHUNK_MIN_BYTES + per * rb - 1) / (per * rb));
    return per * (k > 0 ? k : 1);
}

int kd_file_crc32(const char *path, int64_t *crc)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        kd_err_set("%s: %s", path, strerror(errno));
        return -1;
    }
    unsigned char buf[1 << 16];
    uLong c = crc32(0L, Z_NULL, 0);
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        c = crc32(c, buf, (uInt)n);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        kd_err_set("%s: read error", path);
        return -1;
    }
    *crc = (int64_t)c;
    return 0;
}

/* ------------------------------------------------------------- writing */

kd_tcache *kd_tcache_create(const char *path, const kd_tcache_prov *p)
{
    kd_tcache *c = calloc(1, sizeof *c);
    if (!c) {
        kd_err_set("%s: out of memory", path);
        return NULL;
    }
    c->writing = 1;
    c->epochs = c->batches = -1;
    if (kd_h5_create(&c->h, path, KD_TCACHE_KIND)) {
        free(c);
        return NULL;
    }
    int64_t fd[2] = {0, NCOL};
    if (kd_h5_create_ext(&c->h, FRAMES_DS, KD_I64, 2, fd, 1024) ||
        kd_h5_attr_set_strv(&c->h, FRAMES_DS, "columns", col_names, NCOL) ||
        kd_h5_attr_set_str(&c->h, NULL, "model", p->model ? p->model : "") ||
        kd_h5_attr_set_i64(&c->h, NULL, "model_crc32", p->model_crc32) ||
        kd_h5_attr_set_str(&c->h, NULL, "arch", p->arch ? p->arch : "") ||
        kd_h5_attr_set_str(&c->h, NULL, "prefix", p->prefix ? p->prefix : "") ||
        kd_h5_attr_set_str(&c->h, NULL, "program", p->program ? p->program : "")) {
        kd_tcache_abort(c);
        return NULL;
    }
    return c;
}

/* Frame 0 fixes the layout: record it and create the datasets. */
static int layout_first(kd_tcache *c, const kd_frame *f, const char (*names)[KD_NAME_MAX], int n, int64_t rows)
{
    if (n > KD_TCACHE_MAX_TENSORS) {
        kd_err_set("%s: %d tensors per frame, a cache holds at most %d", c->h.path, n, KD_TCACHE_MAX_TENSORS);
        return -1;
    }
    int64_t one[1] = {0};
    if (kd_h5_create_ext(&c->h, INDEX_DS, KD_I64, 1, one, chunk_rows(rows, sizeof(int64_t))))
        return -1;
    for (int i = 0; i < n; i++) {
        const kd_tensor *t = kd_frame_cget(f, names[i]);
        slot *s = &c->t[i];
        snprintf(s->name, sizeof s->name, "%s", names[i]);
        s->dt = t->dtype;
        s->rank = t->rank;
        memcpy(s->dims, t->dims, sizeof s->dims);
        s->row_bytes = row_bytes(t->dtype, t->rank, t->dims);
        char ds[KD_NAME_MAX + 16];
        ds_name(ds, sizeof ds, s->name);
        if (kd_h5_create_ext(&c->h, ds, s->dt, s->rank, s->dims, chunk_rows(rows, s->row_bytes)))
            return -1;
    }
    c->nt = n;
    c->epochs = kd_frame_meta_i64(f, KD_META_EPOCHS, -1);
    c->batches = kd_frame_meta_i64(f, KD_META_BATCHES, -1);
    return 0;
}

/* Does tensor t have slot s's dtype and row shape? */
static int same_layout(const slot *s, const kd_tensor *t)
{
    if (t->dtype != s->dt || t->rank != s->rank)
        return 0;
    for (int d = 1; d < s->rank; d++)
        if (t->dims[d] != s->dims[d])
            return 0;
    return 1;
}

int kd_tcache_put(kd_tcache *c, const kd_frame *f, int64_t k, const char (*names)[KD_NAME_MAX], int n)
{
    const kd_tensor *x = frame_index(f, k);
    if (!x)
        return -1;
    int64_t rows = x->dims[0];
    for (int i = 0; i < n; i++) {
        const kd_tensor *t = kd_frame_cget(f, names[i]);
        if (!t || t->rank < 1 || t->dims[0] != rows) {
            kd_err_set("frame %" PRId64 ": '%s' has %lld rows, the frame's index %lld: a cache stores one row per image",
                       k, names[i], t && t->rank ? (long long)t->dims[0] : 0LL, (long long)rows);
            return -1;
        }
    }
    if (c->frames == 0) {
        if (layout_first(c, f, names, n, rows))
            return -1;
    } else {
        int ok = n == c->nt;
        for (int i = 0; ok && i < n; i++)
            ok = !strcmp(names[i], c->t[i].name) && same_layout(&c->t[i], kd_frame_cget(f, names[i]));
        if (!ok) {
            kd_err_set("frame %" PRId64 ": the tensors added (names, types or row shapes) differ from frame 0's; "
                       "a cache holds one layout", k);
            return -1;
        }
    }
    for (int i = 0; i < n; i++) {
        char ds[KD_NAME_MAX + 16];
        ds_name(ds, sizeof ds, names[i]);
        const kd_tensor *t = kd_frame_cget(f, names[i]);
        if (kd_h5_append(&c->h, ds, t->dtype, t->data, rows))
            return -1;
    }
    int64_t v[NCOL];
    frame_keys(f, v);
    v[COL_ROWS] = rows;
    v[COL_OFFSET] = c->rows;
    if (kd_h5_append(&c->h, INDEX_DS, KD_I64, x->data, rows) || kd_h5_append(&c->h, FRAMES_DS, KD_I64, v, 1))
        return -1;
    c->rows += rows;
    c->frames++;
    return 0;
}

int kd_tcache_commit(kd_tcache *c)
{
    const char *nm[KD_TCACHE_MAX_TENSORS];
    for (int i = 0; i < c->nt; i++)
        nm[i] = c->t[i].name;
    int64_t one[1] = {0};
    int rc = 0;
    if ((c->frames == 0 && kd_h5_create_ext(&c->h, INDEX_DS, KD_I64, 1, one, 0)) ||
        kd_h5_attr_set_i64(&c->h, NULL, "ntensors", c->nt) ||
        (c->nt && kd_h5_attr_set_strv(&c->h, NULL, "tensors", nm, c->nt)) ||
        kd_h5_attr_set_i64(&c->h, NULL, "frames", c->frames) || kd_h5_attr_set_i64(&c->h, NULL, "rows", c->rows) ||
        kd_h5_attr_set_i64(&c->h, NULL, "epochs", c->epochs) ||
        kd_h5_attr_set_i64(&c->h, NULL, "batches", c->batches)) {
        kd_h5_abort(&c->h);
        rc = -1;
    } else {
        rc = kd_h5_commit(&c->h);
    }
    free(c);
    return rc;
}

void kd_tcache_abort(kd_tcache *c)
{
    if (!c)
        return;
    if (c->writing)
        kd_h5_abort(&c->h);
    else
        kd_h5_close(&c->h);
    free(c->idx);
    free(c);
}

/* ------------------------------------------------------------- reading */

static int open_fail(kd_tcache *c)
{
    kd_tcache_close(c);
    return -1;
}

/* Check the tensor list and every dataset's shape against each other. */
static int read_layout(kd_tcache *c)
{
    kd_h5 *h = &c->h;
    int64_t nt, d[KD_MAX_RANK];
    int64_t want2[2] = {-1, NCOL}, want1[1] = {-1};
    if (kd_h5_attr_get_i64(h, NULL, "ntensors", &nt))
        return -1;
    if (nt < 0 || nt > KD_TCACHE_MAX_TENSORS) {
        kd_err_set("%s: implausible ntensors %lld (corrupt cache)", h->path, (long long)nt);
        return -1;
    }
    if (kd_h5_expect(h, FRAMES_DS, 2, want2, d))
        return -1;
    c->frames = d[0];
    if (kd_h5_expect(h, INDEX_DS, 1, want1, d))
        return -1;
    c->rows = d[0];
    char **nm = NULL;
    int n = nt ? kd_h5_attr_get_strv(h, NULL, "tensors", &nm) : 0;
    if (n < 0)
        return -1;
    int rc = 0;
    if (n != nt) {
        kd_err_set("%s: the tensors attribute lists %d names, ntensors says %lld (corrupt cache)", h->path, n,
                   (long long)nt);
        rc = -1;
    }
    for (int i = 0; !rc && i < n; i++) {
        slot *s = &c->t[i];
        if (!nm[i][0] || strlen(nm[i]) >= KD_NAME_MAX) {
            kd_err_set("%s: bad tensor name '%.80s' (corrupt cache)", h->path, nm[i]);
            rc = -1;
            break;
        }
        snprintf(s->name, sizeof s->name, "%s", nm[i]);
        char ds[KD_NAME_MAX + 16];
        ds_name(ds, sizeof ds, s->name);
        if (kd_h5_info(h, ds, &s->dt, &s->rank, s->dims)) {
            rc = -1;
            break;
        }
        int ok = s->rank >= 1 && s->dims[0] == c->rows;
        double bytes = (double)kd_dtype_size(s->dt);
        for (int r = 1; ok && r < s->rank; r++) {
            ok = s->dims[r] > 0;
            bytes *= (double)s->dims[r];
        }
        if (!ok || bytes > (double)KD_STREAM_MAX_FRAME) {
            kd_err_set("%s: dataset '%s' does not have the index's %lld rows and a valid row shape (corrupt cache)",
                       h->path, ds, (long long)c->rows);
            rc = -1;
            break;
        }
        s->row_bytes = row_bytes(s->dt, s->rank, s->dims);
    }
    kd_strv_free(nm, n);
    c->nt = rc ? 0 : n;
    return rc;
}

kd_tcache *kd_tcache_open(const char *path)
{
    kd_tcache *c = calloc(1, sizeof *c);
    if (!c) {
        kd_err_set("%s: out of memory", path);
        return NULL;
    }
    c->h.id = -1;
    if (kd_h5_open(&c->h, path, KD_TCACHE_KIND)) {
        free(c);
        return NULL;
    }
    if (kd_h5_attr_has(&c->h, NULL, "model") &&
        kd_h5_attr_get_str(&c->h, NULL, "model", c->model, sizeof c->model)) {
        open_fail(c);
        return NULL;
    }
    if (read_layout(c)) {
        open_fail(c);
        return NULL;
    }
    return c;
}

/* "7", or "none" for a key the frame does not carry. */
static const char *key_str(char *buf, size_t len, int col, int64_t v)
{
    if (v == -1)
        snprintf(buf, len, "none");
    else if (col == COL_SEED)
        snprintf(buf, len, "%llu", (unsigned long long)(uint64_t)v);
    else
        snprintf(buf, len, "%lld", (long long)v);
    return buf;
}

static int check_keys(const int64_t *want, const int64_t *got, int64_t k)
{
    char a[32], b[32], c[32], d[32];
    if (want[COL_SEED] != got[COL_SEED]) {
        kd_err_set("frame %" PRId64 ": the cache was written for step %s of seed %s, this frame is step %s of seed %s "
                   MISMATCH, k, key_str(a, sizeof a, COL_STEP, want[COL_STEP]),
                   key_str(b, sizeof b, COL_SEED, want[COL_SEED]), key_str(c, sizeof c, COL_STEP, got[COL_STEP]),
                   key_str(d, sizeof d, COL_SEED, got[COL_SEED]));
        return -1;
    }
    for (int col = COL_EPOCH; col <= COL_BATCH; col++) {
        if (want[col] != got[col]) {
            kd_err_set("frame %" PRId64 ": the cache was written for %s %s, this frame is %s %s " MISMATCH, k,
                       col_names[col], key_str(a, sizeof a, col, want[col]), col_names[col],
                       key_str(b, sizeof b, col, got[col]));
            return -1;
        }
    }
    return 0;
}

int kd_tcache_add(kd_tcache *c, kd_frame *f, int64_t k)
{
    kd_h5 *h = &c->h;
    if (k >= c->frames) {
        kd_err_set("frame %" PRId64 ": the cache holds only %" PRId64 " frames", k, c->frames);
        return -1;
    }
    int64_t want[NCOL], got[NCOL];
    if (kd_h5_read(h, FRAMES_DS, KD_I64, k, 1, want))
        return -1;
    frame_keys(f, got);
    if (check_keys(want, got, k))
        return -1;
    const kd_tensor *x = frame_index(f, k);
    if (!x)
        return -1;
    int64_t rows = x->dims[0], off = want[COL_OFFSET];
    if (want[COL_ROWS] != rows) {
        kd_err_set("frame %" PRId64 ": the cache was written for a frame of %lld rows, this frame has %lld " MISMATCH,
                   k, (long long)want[COL_ROWS], (long long)rows);
        return -1;
    }
    /* rows is the stream's own (already bounded) count; off comes from the file */
    if (off < 0 || off > c->rows || rows > c->rows - off) {
        kd_err_set("%s: frame %" PRId64 ": rows [%lld, +%lld) outside the cache's %lld rows (corrupt cache)",
                   h->path, k, (long long)off, (long long)rows, (long long)c->rows);
        return -1;
    }
    if ((size_t)rows > c->idxcap) {
        int64_t *p = realloc(c->idx, (size_t)rows * sizeof *p);
        if (!p) {
            kd_err_set("%s: out of memory for %lld rows", h->path, (long long)rows);
            return -1;
        }
        c->idx = p;
        c->idxcap = (size_t)rows;
    }
    if (kd_h5_read(h, INDEX_DS, KD_I64, off, rows, c->idx))
        return -1;
    const int64_t *xi = x->data;
    for (int64_t i = 0; i < rows; i++) {
        if (xi[i] != c->idx[i]) {
            kd_err_set("frame %" PRId64 ": row %lld: index %lld, the cache has %lld", k, (long long)i,
                       (long long)xi[i], (long long)c->idx[i]);
            return -1;
        }
    }
    /* x is not used below: adding tensors may move the frame's array */
    for (int i = 0; i < c->nt; i++) {
        slot *s = &c->t[i];
        if ((double)rows * (double)s->row_bytes > (double)KD_STREAM_MAX_FRAME) {
            kd_err_set("%s: frame %" PRId64 ": '%s' would exceed the frame size limit", h->path, k, s->name);
            return -1;
        }
        int64_t dims[KD_MAX_RANK];
        memcpy(dims, s->dims, sizeof dims);
        dims[0] = rows;
        kd_tensor *t = kd_frame_add(f, s->name, s->dt, s->rank, dims);
        if (!t)
            return -1;
        char ds[KD_NAME_MAX + 16];
        ds_name(ds, sizeof ds, s->name);
        if (kd_h5_read(h, ds, s->dt, off, rows, t->data))
            return -1;
    }
    return 0;
}

int64_t kd_tcache_frames(const kd_tcache *c) { return c->frames; }

const char *kd_tcache_model(const kd_tcache *c) { return c->model; }

void kd_tcache_close(kd_tcache *c)
{
    if (!c)
        return;
    kd_h5_close(&c->h);
    free(c->idx);
    free(c);
}
