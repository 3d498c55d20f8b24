#include "kd_h5.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_err.h"
#include "kd_file.h"
#include "kd_h5_guard.h"

#define DEFLATE_LEVEL 1 /* speed over ratio: features and weights compress poorly anyway */

/* HDF5 1.10 crashes in its exit-time cleanup (H5_term_library closing
 * every open file) when a file it is asked to close there, or was asked to
 * close before, could not be written: a full disk leaves the file half
 * freed, and the segfault follows the right message.  So the library's own
 * atexit is replaced by one that skips that cleanup when a close failed, a
 * file open for writing is still open, or the program exits with a failure
 * (an error path: the program is dying with its work unfinished, nothing in
 * the library's state is wanted, and after a failed allocation inside HDF5
 * that state may be half built: freeing it corrupts the heap); otherwise
 * the cleanup runs as before. */
static int close_failed, open_writers;

static void h5_atexit(int status, void *arg)
{
    if (!status && !close_failed && !open_writers)
        H5close();
}

static void h5_quiet(void)
{
    static int done;
    if (!done) {
        H5dont_atexit(); /* before the first call that initialises HDF5 */
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        on_exit(h5_atexit, NULL);
        done = 1;
    }
}

static herr_t file_close(hid_t id)
{
    unsigned intent = 0;
    if (H5Fget_intent(id, &intent) >= 0 && (intent & H5F_ACC_RDWR))
        open_writers--;
    herr_t e = H5Fclose(id);
    if (e < 0)
        close_failed = 1;
    return e;
}

static hid_t mem_type(kd_dtype dt)
{
    switch (dt) {
    case KD_U8: return H5T_NATIVE_UINT8;
    case KD_I32: return H5T_NATIVE_INT32;
    case KD_I64: return H5T_NATIVE_INT64;
    case KD_F32: return H5T_NATIVE_FLOAT;
    }
    return -1;
}

static hid_t file_type(kd_dtype dt)
{
    switch (dt) {
    case KD_U8: return H5T_STD_U8LE;
    case KD_I32: return H5T_STD_I32LE;
    case KD_I64: return H5T_STD_I64LE;
    case KD_F32: return H5T_IEEE_F32LE;
    }
    return -1;
}

int kd_h5_is_hdf5(const char *path)
{
    h5_quiet();
    return H5Fis_hdf5(path) > 0;
}

static int write_root_attrs(kd_h5 *h, const char *kind)
{
    if (kd_h5_attr_set_i64(h, NULL, "kdpipe_format", KD_H5_FORMAT))
        return -1;
    return kd_h5_attr_set_str(h, NULL, "kdpipe_kind", kind);
}

int kd_h5_create(kd_h5 *h, const char *path, const char *kind)
{
    h5_quiet();
    snprintf(h->path, sizeof h->path, "%s", path);
    h->tmp[0] = 0;
    h->id = -1;
    if (kd_file_check_target(path))
        return -1;
    kd_file_tmpname(h->tmp, sizeof h->tmp, path);
    kd_file_tmp_register(h->tmp);
    /* The 1.8 file format: object headers (and with them the attributes)
     * carry checksums, so a corrupt header is an error on open instead of
     * a wild read; HDF5 1.8 and later, h5py included, read it. */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
    /* no timestamps in object headers (the root group's here, the others'
     * where they are made): the same tensors make the same bytes, so runs
     * compare with cmp, whatever second they finished in */
    H5Pset_obj_track_times(fcpl, 0);
    h->id = H5Fcreate(h->tmp, H5F_ACC_TRUNC, fcpl, fapl);
    H5Pclose(fcpl);
    H5Pclose(fapl);
    if (h->id < 0) {
        kd_err_set("%s: cannot create HDF5 file (%s)", path, errno ? strerror(errno) : "HDF5 error");
        kd_file_tmp_remove(h->tmp);
        return -1;
    }
    open_writers++;
    if (write_root_attrs(h, kind)) {
        kd_h5_abort(h);
        return -1;
    }
    return 0;
}

int kd_h5_commit(kd_h5 *h)
{
    herr_t e = file_close(h->id);
    h->id = -1;
    if (e < 0) {
        kd_err_set("%s: cannot finish writing the HDF5 file", h->path);
        kd_file_tmp_remove(h->tmp);
        return -1;
    }
    return kd_file_rename_synced(h->tmp, h->path);
}

void kd_h5_abort(kd_h5 *h)
{
    if (h->id >= 0)
        file_close(h->id);
    h->id = -1;
    if (h->tmp[0])
        kd_file_tmp_remove(h->tmp);
}

static int check_file(kd_h5 *h, const char *kind)
{
    int64_t fmt;
    if (!kd_h5_attr_has(h, NULL, "kdpipe_format")) {
        kd_err_set("%s: not a kdpipe file (no kdpipe_format attribute)", h->path);
        return -1;
    }
    if (kd_h5_attr_get_i64(h, NULL, "kdpipe_format", &fmt))
        return -1;
    if (fmt > KD_H5_FORMAT || fmt < 1) {
        kd_err_set("%s: kdpipe_format %lld is not supported (this kdpipe reads format %d)", h->path,
                   (long long)fmt, KD_H5_FORMAT);
        return -1;
    }
    if (kind) {
        const char *k = kd_h5_kind(h);
        if (strcmp(k, kind)) {
            kd_err_set("%s: is a kdpipe '%s' file, expected a '%s' file", h->path, k[0] ? k : "unknown",
                       kind);
            return -1;
        }
    }
    return 0;
}

static int open_mode(kd_h5 *h, const char *path, const char *kind, unsigned mode)
{
    h5_quiet();
    snprintf(h->path, sizeof h->path, "%s", path);
    h->tmp[0] = 0;
    h->id = -1;
    if (access(path, R_OK) != 0) {
        kd_err_set("%s: %s", path, strerror(errno));
        return -1;
    }
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) {
        kd_err_set("%s: not an HDF5 file", path);
        return -1;
    }
    h->id = H5Fopen(path, mode, H5P_DEFAULT);
    if (h->id < 0) {
        kd_err_set("%s: cannot open HDF5 file (truncated or corrupt?)", path);
        return -1;
    }
    if (mode == H5F_ACC_RDWR)
        open_writers++;
    if (check_file(h, kind)) {
        kd_h5_close(h);
        return -1;
    }
    return 0;
}

int kd_h5_open(kd_h5 *h, const char *path, const char *kind)
{
    h5_quiet(); /* H5F_ACC_* initialise HDF5: h5_quiet must come first */
    return open_mode(h, path, kind, H5F_ACC_RDONLY);
}

int kd_h5_open_rw(kd_h5 *h, const char *path, const char *kind)
{
    h5_quiet(); /* H5F_ACC_* initialise HDF5: h5_quiet must come first */
    return open_mode(h, path, kind, H5F_ACC_RDWR);
}

void kd_h5_close(kd_h5 *h)
{
    if (h->id >= 0)
        file_close(h->id);
    h->id = -1;
}

const char *kd_h5_kind(const kd_h5 *h)
{
    static _Thread_local char kind[64];
    if (kd_h5_attr_get_str(h, NULL, "kdpipe_kind", kind, sizeof kind))
        kind[0] = 0;
    return kind;
}

/* ---- datasets ---- */

int kd_h5_exists(const kd_h5 *h, const char *name)
{
    /* H5Lexists fails (not "false") when an intermediate group is missing, so
     * check each prefix. */
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", name);
    for (char *p = buf;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (buf[0] && H5Lexists(h->id, buf, H5P_DEFAULT) <= 0)
                return 0;
            if (!c)
                return 1;
            *p = c;
        }
    }
}

/* The groups above a new dataset, made here rather than by HDF5's
 * intermediate-group creation, which would give them timestamps. */
static int make_parents(kd_h5 *h, const char *name)
{
    char path[1024];
    size_t n = strlen(name);
    if (n >= sizeof path) {
        kd_err_set("%s: dataset name '%.40s...' is too long", h->path, name);
        return -1;
    }
    memcpy(path, name, n + 1);
    for (char *p = strchr(path + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = 0;
        htri_t e = H5Lexists(h->id, path, H5P_DEFAULT);
        if (e == 0) {
            hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
            H5Pset_obj_track_times(gcpl, 0);
            hid_t g = H5Gcreate2(h->id, path, H5P_DEFAULT, gcpl, H5P_DEFAULT);
            H5Pclose(gcpl);
            if (g < 0 || H5Gclose(g) < 0)
                e = -1;
        }
        if (e < 0) {
            kd_err_set("%s: cannot create group '%s'", h->path, path);
            return -1;
        }
        *p = '/';
    }
    return 0;
}

static int create(kd_h5 *h, const char *name, kd_dtype dt, int rank, const hsize_t *cur,
                  const hsize_t *max, const hsize_t *chunk)
{
    if (kd_h5_exists(h, name)) {
        kd_err_set("%s: dataset '%s' already exists", h->path, name);
        return -1;
    }
    hid_t sp = rank ? H5Screate_simple(rank, cur, max) : H5Screate(H5S_SCALAR);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (chunk) {
        H5Pset_chunk(dcpl, rank, chunk);
        H5Pset_shuffle(dcpl);
        H5Pset_deflate(dcpl, DEFLATE_LEVEL);
        /* a checksum per chunk: a flipped byte in the data is then an error
         * on read, not a silently different tensor */
        H5Pset_fletcher32(dcpl);
    }
    H5Pset_obj_track_times(dcpl, 0);
    hid_t ds = make_parents(h, name) ? -1 : H5Dcreate2(h->id, name, file_type(dt), sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(sp);
    /* closing a dataset can write it out (and fail): a write path checks it */
    if (ds < 0 || H5Dclose(ds) < 0) {
        kd_err_set("%s: cannot create dataset '%s'", h->path, name);
        return -1;
    }
    return 0;
}

static int64_t row_bytes(kd_dtype dt, int rank, const int64_t *dims)
{
    int64_t b = (int64_t)kd_dtype_size(dt);
    for (int i = 1; i < rank; i++)
        b *= dims[i] > 0 ? dims[i] : 1;
    return b;
}

int kd_h5_create_ext(kd_h5 *h, const char *name, kd_dtype dt, int rank, const int64_t *dims, int64_t chunk0)
{
    if (rank < 1 || rank > KD_MAX_RANK) {
        kd_err_set("%s: dataset '%s': bad rank %d", h->path, name, rank);
        return -1;
    }
    hsize_t cur[KD_MAX_RANK], max[KD_MAX_RANK], chunk[KD_MAX_RANK];
    if (chunk0 <= 0) {
        chunk0 = (1 << 20) / row_bytes(dt, rank, dims);
        if (chunk0 < 1)
            chunk0 = 1;
    }
    for (int i = 0; i < rank; i++) {
        if (i && dims[i] < 1) {
            kd_err_set("%s: dataset '%s': dimension %d must be positive", h->path, name, i);
            return -1;
        }
        cur[i] = i ? (hsize_t)dims[i] : 0;
        max[i] = i ? (hsize_t)dims[i] : H5S_UNLIMITED;
        chunk[i] = i ? (hsize_t)dims[i] : (hsize_t)chunk0;
    }
    return create(h, name, dt, rank, cur, max, chunk);
}

int kd_h5_append(kd_h5 *h, const char *name, kd_dtype dt, const void *data, int64_t n0)
{
    if (n0 <= 0)
        return 0;
    hid_t ds = H5Dopen2(h->id, name, H5P_DEFAULT);
    if (ds < 0) {
        kd_err_set("%s: no dataset '%s'", h->path, name);
        return -1;
    }
    hid_t sp = H5Dget_space(ds);
    int rank = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[KD_MAX_RANK], start[KD_MAX_RANK] = {0}, count[KD_MAX_RANK];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    start[0] = dims[0];
    dims[0] += (hsize_t)n0;
    int rc = -1;
    if (H5Dset_extent(ds, dims) >= 0) {
        sp = H5Dget_space(ds);
        for (int i = 0; i < rank; i++)
            count[i] = i ? dims[i] : (hsize_t)n0;
        hid_t ms = H5Screate_simple(rank, count, NULL);
        if (H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
            H5Dwrite(ds, mem_type(dt), ms, sp, H5P_DEFAULT, data) >= 0)
            rc = 0;
        H5Sclose(ms);
        H5Sclose(sp);
    }
    if (H5Dclose(ds) < 0) /* flushes the chunk cache */
        rc = -1;
    if (rc)
        kd_err_set("%s: cannot append to '%s' (disk full?)", h->path, name);
    return rc;
}

int kd_h5_write(kd_h5 *h, const char *name, kd_dtype dt, int rank, const int64_t *dims, const void *data)
{
    if (rank < 0 || rank > KD_MAX_RANK) {
        kd_err_set("%s: dataset '%s': bad rank %d", h->path, name, rank);
        return -1;
    }
    hsize_t cur[KD_MAX_RANK], chunk[KD_MAX_RANK];
    int64_t bytes = (int64_t)kd_dtype_size(dt), rb = row_bytes(dt, rank, dims);
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0) {
            kd_err_set("%s: dataset '%s': negative dimension", h->path, name);
            return -1;
        }
        cur[i] = (hsize_t)dims[i];
        bytes *= dims[i];
    }
    int chunked = rank > 0 && bytes > 0; /* chunked even when small: chunks carry the checksums */
    if (chunked) {
        int64_t c0 = (1 << 20) / rb;
        if (c0 < 1)
            c0 = 1;
        if (c0 > dims[0])
            c0 = dims[0];
        for (int i = 0; i < rank; i++)
            chunk[i] = i ? cur[i] : (hsize_t)c0;
    }
    if (create(h, name, dt, rank, cur, NULL, chunked ? chunk : NULL))
        return -1;
    if (bytes == 0)
        return 0;
    hid_t ds = H5Dopen2(h->id, name, H5P_DEFAULT);
    herr_t e = ds < 0 ? -1 : H5Dwrite(ds, mem_type(dt), H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (ds >= 0 && H5Dclose(ds) < 0) /* flushes the chunk cache: the data may be written only here */
        e = -1;
    if (e < 0) {
        kd_err_set("%s: cannot write '%s' (disk full?)", h->path, name);
        return -1;
    }
    return 0;
}

int kd_h5_info(const kd_h5 *h, const char *name, kd_dtype *dt, int *rank, int64_t *dims)
{
    if (!kd_h5_exists(h, name)) {
        kd_err_set("%s: no dataset '%s'", h->path, name);
        return -1;
    }
    hid_t ds = H5Dopen2(h->id, name, H5P_DEFAULT);
    if (ds < 0) {
        kd_err_set("%s: '%s' is not a dataset", h->path, name);
        return -1;
    }
    hid_t ty = H5Dget_type(ds), sp = H5Dget_space(ds);
    H5T_class_t cls = H5Tget_class(ty);
    size_t sz = H5Tget_size(ty);
    H5T_sign_t sg = cls == H5T_INTEGER ? H5Tget_sign(ty) : H5T_SGN_NONE;
    int r = H5Sget_simple_extent_ndims(sp);
    hsize_t d[KD_MAX_RANK];
    int rc = 0;
    if (r < 0 || r > KD_MAX_RANK) {
        kd_err_set("%s: dataset '%s' has unsupported rank %d", h->path, name, r);
        rc = -1;
    } else {
        H5Sget_simple_extent_dims(sp, d, NULL);
        hsize_t numel = 1;
        for (int i = 0; i < r; i++) {
            dims[i] = (int64_t)d[i];
            numel *= d[i];
        }
        *rank = r;
        /* A shape is a promise only if its data were written: a few KB of
         * file can declare millions of never-written (fill-value) rows, and
         * every reader sizes its buffers from this shape. */
        int unwritten = numel ? kd_h5_unwritten(ds, r, d) : 0;
        if (unwritten) {
            kd_err_set("%s: dataset '%s' declares %llu rows that were never %swritten", h->path, name,
                       (unsigned long long)(r ? d[0] : 1), unwritten == 2 ? "all " : "");
            rc = -1;
        }
        if (rc)
            ;
        else if (cls == H5T_FLOAT)
            *dt = KD_F32;
        else if (cls == H5T_INTEGER && sz == 1 && sg == H5T_SGN_NONE)
            *dt = KD_U8;
        else if (cls == H5T_INTEGER && sz == 8)
            *dt = KD_I64;
        else if (cls == H5T_INTEGER)
            *dt = KD_I32;
        else {
            kd_err_set("%s: dataset '%s' has a non-numeric type", h->path, name);
            rc = -1;
        }
    }
    H5Tclose(ty);
    H5Sclose(sp);
    H5Dclose(ds);
    return rc;
}

int kd_h5_expect(const kd_h5 *h, const char *name, int rank, const int64_t *want, int64_t *dims)
{
    kd_dtype dt;
    int r;
    int64_t d[KD_MAX_RANK];
    if (kd_h5_info(h, name, &dt, &r, d))
        return -1;
    int ok = r == rank;
    for (int i = 0; ok && i < rank; i++)
        ok = want[i] < 0 || want[i] == d[i];
    if (!ok) {
        char got[200] = "", exp[200] = "";
        for (int i = 0; i < r; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "", (long long)d[i]);
        for (int i = 0; i < rank; i++) {
            if (want[i] < 0)
                snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%s*", i ? "," : "");
            else
                snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%s%lld", i ? "," : "", (long long)want[i]);
        }
        kd_err_set("%s: dataset '%s' has shape [%s], expected [%s]", h->path, name, got, exp);
        return -1;
    }
    if (dims)
        memcpy(dims, d, sizeof(int64_t) * (size_t)r);
    return 0;
}

int kd_h5_read(const kd_h5 *h, const char *name, kd_dtype dt, int64_t start, int64_t count, void *buf)
{
    hid_t ds = H5Dopen2(h->id, name, H5P_DEFAULT);
    if (ds < 0) {
        kd_err_set("%s: no dataset '%s'", h->path, name);
        return -1;
    }
    hid_t sp = H5Dget_space(ds);
    int rank = H5Sget_simple_extent_ndims(sp);
    int rc = -1;
    if (kd_h5_storage_ok(h, ds, sp, name, start, count)) {
        H5Sclose(sp);
        H5Dclose(ds);
        return -1;
    }
    if (rank == 0) {
        rc = H5Dread(ds, mem_type(dt), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0 ? -1 : 0;
    } else if (rank > 0 && rank <= KD_MAX_RANK) {
        hsize_t dims[KD_MAX_RANK], st[KD_MAX_RANK] = {0}, cnt[KD_MAX_RANK];
        H5Sget_simple_extent_dims(sp, dims, NULL);
        if (start < 0 || count < 0 || (hsize_t)(start + count) > dims[0]) {
            kd_err_set("%s: rows [%lld, %lld) of '%s' are outside its %llu rows", h->path,
                       (long long)start, (long long)(start + count), name, (unsigned long long)dims[0]);
            H5Sclose(sp);
            H5Dclose(ds);
            return -1;
        }
        if (count == 0)
            rc = 0;
        else {
            st[0] = (hsize_t)start;
            for (int i = 0; i < rank; i++)
                cnt[i] = i ? dims[i] : (hsize_t)count;
            hid_t ms = H5Screate_simple(rank, cnt, NULL);
            if (H5Sselect_hyperslab(sp, H5S_SELECT_SET, st, NULL, cnt, NULL) >= 0 &&
                H5Dread(ds, mem_type(dt), ms, sp, H5P_DEFAULT, buf) >= 0)
                rc = 0;
            H5Sclose(ms);
        }
    }
    H5Sclose(sp);
    H5Dclose(ds);
    if (rc)
        kd_err_set("%s: cannot read '%s' (corrupt file or incompatible type)", h->path, name);
    return rc;
}

/* ---- walking ---- */

typedef struct {
    int (*fn)(const char *, void *);
    void *ctx;
    int stop;
} walk_ctx;

static herr_t walk_cb(hid_t g, const char *name, const H5L_info_t *info, void *op)
{
    walk_ctx *w = op;
    if (info->type != H5L_TYPE_HARD)
        return 0;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0)
        return 0;
    int is_ds = H5Iget_type(o) == H5I_DATASET;
    H5Oclose(o);
    if (is_ds && (w->stop = w->fn(name, w->ctx)))
        return 1;
    return 0;
}

int kd_h5_walk(const kd_h5 *h, int (*fn)(const char *name, void *ctx), void *ctx)
{
    walk_ctx w = {fn, ctx, 0};
    if (H5Lvisit(h->id, H5_INDEX_NAME, H5_ITER_INC, walk_cb, &w) < 0) {
        kd_err_set("%s: cannot list the file's datasets", h->path);
        return -1;
    }
    return w.stop;
}
