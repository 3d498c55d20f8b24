#include "kd_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_err.h"

/* ---- temporaries removed on every exit path ----
 * A fixed table, so that the signal handler only reads memory and calls
 * unlink (async-signal-safe). */
#define MAX_TMP 16
static struct {
    volatile sig_atomic_t used;
    char path[4200];
} tmps[MAX_TMP];
/* SIGABRT, SIGSEGV and SIGBUS too: BLIS aborts when its allocations fail,
 * and HDF5 1.10 can crash on a failed allocation; the crash stays a crash,
 * but leaves no temporary behind. */
static const int tmp_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGXFSZ, SIGABRT, SIGSEGV, SIGBUS};

static void unlink_tmps(void)
{
    for (int i = 0; i < MAX_TMP; i++)
        if (tmps[i].used)
            unlink(tmps[i].path);
}

static void on_signal(int sig)
{
    unlink_tmps();
    signal(sig, SIG_DFL);
    raise(sig); /* delivered on return: the process ends as the signal says */
}

static void install_handlers(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    atexit(unlink_tmps);
    /* a stack of its own: a stack overflow (HDF5 recursing on a failed
     * allocation) leaves none for the handler; one already set up (ASan's)
     * is kept */
    static char alt[1 << 16];
    stack_t cur, st = {.ss_sp = alt, .ss_size = sizeof alt};
    int onstack = 0;
    if (sigaltstack(NULL, &cur) == 0)
        onstack = !(cur.ss_flags & SS_DISABLE) || sigaltstack(&st, NULL) == 0 ? SA_ONSTACK : 0;
    for (size_t i = 0; i < sizeof tmp_signals / sizeof *tmp_signals; i++) {
        struct sigaction old, sa = {.sa_handler = on_signal, .sa_flags = onstack};
        sigemptyset(&sa.sa_mask);
        /* a signal the caller ignores (nohup, SIGXFSZ ignored to get EFBIG) stays ignored */
        if (sigaction(tmp_signals[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL)
            sigaction(tmp_signals[i], &sa, NULL);
    }
}

void kd_file_tmp_register(const char *tmp)
{
    install_handlers();
    for (int i = 0; i < MAX_TMP; i++)
        if (!tmps[i].used) {
            snprintf(tmps[i].path, sizeof tmps[i].path, "%s", tmp);
            tmps[i].used = 1;
            return;
        }
}

void kd_file_tmp_forget(const char *tmp)
{
    for (int i = 0; i < MAX_TMP; i++)
        if (tmps[i].used && !strcmp(tmps[i].path, tmp))
            tmps[i].used = 0;
}

void kd_file_tmp_remove(const char *tmp)
{
    unlink(tmp);
    kd_file_tmp_forget(tmp);
}

int kd_file_check_target(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        kd_err_set("%s: not a regular file (%s): this output is written beside it and renamed over it; give a file name",
                   path, S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO" : "a device or socket");
        return -1;
    }
    char tmp[4200];
    kd_file_tmpname(tmp, sizeof tmp, path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
    if (fd < 0) {
        kd_err_set("%s: cannot create a file beside it: %s", path, strerror(errno));
        return -1;
    }
    close(fd);
    unlink(tmp);
    return 0;
}

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
        kd_file_tmp_remove(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        kd_err_set("%s: cannot rename into place: %s", path, strerror(errno));
        kd_file_tmp_remove(tmp);
        return -1;
    }
    kd_file_tmp_forget(tmp);
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
    kd_file_tmp_register(o->tmp);
    o->f = fopen(o->tmp, "wb");
    if (!o->f) {
        kd_err_set("%s: cannot create: %s", path, strerror(errno));
        kd_file_tmp_forget(o->tmp);
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
            errno = err; /* EPIPE tells a stream writer that its reader has gone */
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
        kd_file_tmp_remove(o->tmp);
        return -1;
    }
    if (rename(o->tmp, o->path) != 0) {
        kd_err_set("%s: cannot rename into place: %s", o->path, strerror(errno));
        kd_file_tmp_remove(o->tmp);
        return -1;
    }
    kd_file_tmp_forget(o->tmp);
    sync_dir(o->path);
    return 0;
}

void kd_file_abort(kd_file *o)
{
    if (o->f && o->f != stdout)
        fclose(o->f);
    if (o->tmp[0])
        kd_file_tmp_remove(o->tmp);
    o->f = NULL;
}

int kd_file_spool_stdin(char *path, size_t len)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, len, "%s/kdpipe-stdin.XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        kd_err_set("-: cannot create a temporary file for standard input: %s", strerror(errno));
        return -1;
    }
    kd_file_tmp_register(path);
    char buf[1 << 16];
    size_t n;
    int bad = 0;
    while (!bad && (n = fread(buf, 1, sizeof buf, stdin)) > 0)
        for (size_t off = 0; !bad && off < n;) {
            ssize_t k = write(fd, buf + off, n - off);
            if (k < 0 && errno == EINTR)
                continue;
            bad = k <= 0;
            off += k > 0 ? (size_t)k : 0;
        }
    int err = errno;
    if (ferror(stdin)) {
        kd_err_set("-: read error: %s", strerror(errno));
        bad = -1;
    } else if (bad)
        kd_err_set("-: cannot copy standard input to %s: %s", path, strerror(err));
    if (close(fd) && !bad) {
        kd_err_set("-: cannot copy standard input to %s: %s", path, strerror(errno));
        bad = 1;
    }
    if (bad) {
        kd_file_tmp_remove(path);
        return -1;
    }
    return 0;
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
