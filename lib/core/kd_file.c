#include "kd_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_err.h"

void kd_file_tmpname(char *buf, size_t len, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash)
        snprintf(buf, len, "%.*s/.%s.tmp.%ld", (int)(slash - path), path, slash + 1, (long)getpid());
    else
        snprintf(buf, len, ".%s.tmp.%ld", path, (long)getpid());
}

/* fsync the directory holding path so that the rename itself is durable. */
static void sync_dir(const char *path)
{
    char d[4096];
    snprintf(d, sizeof d, "%s", path);
    int fd = open(dirname(d), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd); /* best effort: some filesystems refuse directory fsync */
        close(fd);
    }
}

int kd_file_rename_synced(const char *tmp, const char *path)
{
    int fd = open(tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        kd_err_set("%s: cannot sync: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        kd_err_set("%s: cannot rename into place: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    sync_dir(path);
    return 0;
}

int kd_file_open(kd_file *o, const char *path)
{
    snprintf(o->path, sizeof o->path, "%s", path);
    if (!strcmp(path, "-")) {
        o->f = stdout;
        o->tmp[0] = 0;
        return 0;
    }
    /* A device or FIFO (-o /dev/null, a named pipe) is written in place:
     * renaming a temporary over it would replace it with a regular file. */
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        o->tmp[0] = 0;
        o->f = fopen(path, "wb");
        if (!o->f) {
            kd_err_set("%s: cannot open: %s", path, strerror(errno));
            return -1;
        }
        return 0;
    }
    kd_file_tmpname(o->tmp, sizeof o->tmp, path);
    o->f = fopen(o->tmp, "wb");
    if (!o->f) {
        kd_err_set("%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int kd_file_commit(kd_file *o)
{
    if (!o->tmp[0]) {
        int bad = fflush(o->f) != 0;
        int err = errno;
        if (o->f != stdout && fclose(o->f) != 0)
            bad = 1;
        o->f = NULL;
        if (bad) {
            kd_err_set("%s: write error: %s", o->path, strerror(err));
            return -1;
        }
        return 0;
    }
    int bad = ferror(o->f) || fflush(o->f) != 0 || fsync(fileno(o->f)) != 0;
    int err = errno;
    if (fclose(o->f) != 0 && !bad) {
        bad = 1;
        err = errno;
    }
    o->f = NULL;
    if (bad) {
        kd_err_set("%s: write error: %s", o->path, strerror(err));
        unlink(o->tmp);
        return -1;
    }
    if (rename(o->tmp, o->path) != 0) {
        kd_err_set("%s: cannot rename into place: %s", o->path, strerror(errno));
        unlink(o->tmp);
        return -1;
    }
    sync_dir(o->path);
    return 0;
}

void kd_file_abort(kd_file *o)
{
    if (o->f && o->f != stdout)
        fclose(o->f);
    if (o->tmp[0])
        unlink(o->tmp);
    o->f = NULL;
}

int kd_file_slurp(const char *path, unsigned char **buf, size_t *len)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        kd_err_set("%s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap + 1);
    while (b) {
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (n < cap)
            break;
        cap *= 2;
        unsigned char *nb = realloc(b, cap + 1);
        if (!nb) {
            free(b);
            b = NULL;
        } else
            b = nb;
    }
    int bad = !b || ferror(f);
    if (f != stdin)
        fclose(f);
    if (bad) {
        free(b);
        kd_err_set("%s: %s", path, b ? "read error" : "out of memory");
        return -1;
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    return 0;
}
