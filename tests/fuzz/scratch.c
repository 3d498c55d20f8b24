/* scratch — scratch files for the harnesses (scratch.h). */
#include "scratch.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "kd_err.h"
#include "kd_stream.h"

static char dir[256];

static int rm_one(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    remove(p);
    return 0;
}

static void rm_all(void)
{
    if (dir[0])
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_dir(void)
{
    if (!dir[0]) {
        struct stat st;
        const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
        snprintf(dir, sizeof dir, "%s/kdfuzz.%ld", base, (long)getpid());
        if (mkdir(dir, 0700) && errno != EEXIST) {
            perror(dir);
            abort();
        }
        atexit(rm_all);
    }
    return dir;
}

void fuzz_clean(void)
{
    rm_all();
    if (mkdir(fuzz_dir(), 0700) && errno != EEXIST) {
        perror(dir);
        abort();
    }
}

void fuzz_write(const char *name, const uint8_t *data, size_t size, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%s", fuzz_dir(), name);
    for (char *s = out + strlen(dir) + 1; (s = strchr(s, '/')); s++) {
        *s = 0;
        if (mkdir(out, 0700) && errno != EEXIST) {
            perror(out);
            abort();
        }
        *s = '/';
    }
    FILE *f = fopen(out, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) {
        perror(out);
        abort();
    }
}

int fuzz_note(const char *what, int rc)
{
    static int verbose = -1;
    if (verbose < 0)
        verbose = getenv("KD_FUZZ_VERBOSE") != NULL;
    if (verbose)
        fprintf(stderr, "%s: %s\n", what, rc ? kd_err_get() : "ok");
    return rc;
}

void fuzz_h5_ids(void)
{
    ssize_t n = H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (n > 0) {
        hid_t ids[16];
        ssize_t k = H5Fget_obj_ids((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL, 16, ids);
        fprintf(stderr, "fuzz: %zd HDF5 objects left open:", n);
        for (ssize_t i = 0; i < k; i++) {
            char name[256] = "?";
            H5Iget_name(ids[i], name, sizeof name);
            fprintf(stderr, " %s (type %d)", name, (int)H5Iget_type(ids[i]));
        }
        fprintf(stderr, "\n");
        abort();
    }
}

void fuzz_read_stream(const uint8_t *data, size_t size, const char *what)
{
    FILE *f = fmemopen((void *)data, size ? size : 1, "rb");
    if (!f)
        return;
    if (!size)
        fgetc(f); /* fmemopen cannot open an empty buffer: empty it */
    kd_reader *r = kd_reader_fopen(f, "fuzz");
    if (r) {
        kd_frame fr;
        kd_frame_init(&fr);
        int rc;
        while ((rc = kd_reader_next(r, &fr)) == 1)
            ;
        fuzz_note(what, rc < 0);
        kd_frame_free(&fr);
        kd_reader_close(r);
    }
    fclose(f);
}
