/* kd_fault.so — fault injection for the tests (tests/fault.bats), after
 * SQLite's: LD_PRELOAD this library and the N-th call of one class of
 * functions fails, as a full disk, a failing device or memory exhaustion
 * would make it fail; every other call goes through.
 *
 *   KD_FAULT=CLASS:N        fail the N-th call (1-based) of CLASS, only it
 *   KD_FAULT=CLASS:N+       fail the N-th call and every later one
 *   KD_FAULT_COUNT=FILE     write "CLASS COUNT" per class to FILE (at exit:
 *                           the run's totals), and "fired CLASS N in OBJECT"
 *                           when a fault was injected (written then too, as
 *                           the run may not survive it): OBJECT is the first
 *                           caller on the stack outside libc, the program or
 *                           the library (libhdf5..., libblis...) that met it
 *   KD_FAULT_TRACE=1        print the failed call's stack on standard error
 *                           (for finding the code behind a failing N)
 *
 * Classes, and the calls each one counts and fails:
 *   write     write pwrite pwrite64 writev (errno ENOSPC, -1), and the stdio
 *             calls fwrite fputs fputc putc puts putchar fprintf vfprintf
 *             printf fflush (errno ENOSPC, the stream's error indicator set,
 *             the call's failure value).  glibc's stdio reaches write(2)
 *             through an internal call that no preloaded library can
 *             interpose, so the stdio entry points are faulted themselves.
 *             Output to standard error (fd 2, stderr) is neither counted nor
 *             failed: it carries the program's message.
 *   fsync     fsync fdatasync (errno EIO)
 *   rename    rename renameat renameat2 (errno EIO; the rename is not done)
 *   malloc    malloc calloc realloc posix_memalign aligned_alloc
 *             (NULL / ENOMEM; realloc leaves the old block alone)
 *   kdmalloc  the same calls made directly by the program's own code
 *             (kdpipe, whose libkd.a is linked in; a strdup or fopen of ours
 *             allocates in libc, and counts as malloc only): counted apart
 *             from (and as well as) malloc, so that every allocation of ours
 *             can be failed in a run that makes tens of thousands in HDF5
 *   H5Dwrite  H5Dwrite (returns -1, nothing written)
 *
 * Only calls made once the program's main has been entered are counted
 * (__libc_start_main is wrapped): the dynamic loader's and the libraries'
 * start-up allocations are the same in every run and not the program's
 * business.  Calls made during exit (atexit handlers, HDF5's cleanup) are
 * counted and can fail.  The counters are atomic, but a run is only
 * repeatable call for call with one thread: the tests pass --threads 1.
 *
 * What it found that cannot be fixed here (tests/fault.bats tolerates these
 * crashes only for a failed malloc made inside libhdf5 or libblis, and still
 * wants the old output intact and no temporary): BLIS 0.9 aborts when an
 * allocation of its own fails (bli_malloc.c:293, "heap memory is likely
 * exhausted"); HDF5 1.10 crashes on some failed allocations (a segfault in
 * H5FL_blk_free, an endless H5E_printf_stack/H5I_inc_ref recursion) and on
 * others calls exit(-1) without a word (H5I_register: kd_cli turns that into
 * exit 1 with a message).
 *
 * Adding a function: write its wrapper with the same prototype, resolve the
 * real one with REAL(name), and begin it with `if (fault(CLASS)) { set errno;
 * return the failure value; }` (an allocator: alloc_fault(the return address)) (a new class also needs a line in
 * class_names[] and in the enum).  glibc-specific (the stdio error flag,
 * __libc_start_main), which is what Debian ships.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <execinfo.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

typedef int64_t hid_t_;   /* hid_t in HDF5 1.10 */
typedef int herr_t_;

enum { C_WRITE, C_FSYNC, C_RENAME, C_MALLOC, C_KDMALLOC, C_H5DWRITE, C_N };
static const char *const class_names[C_N] = {"write", "fsync", "rename", "malloc", "kdmalloc", "H5Dwrite"};

static long counts[C_N];
static int target = -1;        /* the class to fail, -1 for none */
static long target_n;          /* its call number */
static int persistent;         /* fail from target_n on */
static long fired_n;           /* the first call that was failed */
static char fired_in[256] = "?"; /* ... and who made it */
static int started;            /* main has been entered */
static __thread int inside;    /* within the shim's own work: count nothing */

#define _IO_ERR_SEEN_ 0x0020   /* glibc's libio flag behind ferror() */

/* ---- the real functions ---- */

/* dlsym may allocate (dlerror's buffer): while resolving, the allocator
 * wrappers serve from this static buffer, whose blocks free() ignores. */
static char boot[8192] __attribute__((aligned(16)));
static size_t boot_used;
static __thread int resolving;

static void *boot_alloc(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (boot_used + n > sizeof boot)
        return NULL;
    void *p = boot + boot_used;
    boot_used += n;
    return p;
}

static int is_boot(const void *p)
{
    return (const char *)p >= boot && (const char *)p < boot + sizeof boot;
}

static void *resolve(const char *name)
{
    resolving++;
    void *f = dlsym(RTLD_NEXT, name);
    resolving--;
    return f;
}

#define REAL(name)                                                                                 \
    static __typeof__(name) *real_##name;                                                          \
    if (!real_##name)                                                                              \
        real_##name = (__typeof__(name) *)resolve(#name);

/* ---- configuration and report ---- */

static void configure(void)
{
    const char *s = getenv("KD_FAULT");
    if (!s || !*s)
        return;
    const char *colon = strchr(s, ':');
    if (!colon)
        return;
    for (int c = 0; c < C_N; c++)
        if (strlen(class_names[c]) == (size_t)(colon - s) && !strncmp(s, class_names[c], colon - s))
            target = c;
    char *end;
    target_n = strtol(colon + 1, &end, 10);
    persistent = *end == '+';
    if (target_n < 1)
        target = -1;
}

/* Written when the fault fires (the run may not survive it) and again at
 * exit with the totals. */
static void report(void)
{
    const char *path = getenv("KD_FAULT_COUNT");
    if (!path || !*path)
        return;
    /* no stdio, no allocation: the heap may be broken by now */
    char buf[1024];
    size_t len = 0;
    int saved = errno;
    inside++;
    for (int c = 0; c < C_N; c++)
        len += snprintf(buf + len, sizeof buf - len, "%s %ld\n", class_names[c], counts[c]);
    if (fired_n)
        len += snprintf(buf + len, sizeof buf - len, "fired %s %ld in %s\n", class_names[target], fired_n, fired_in);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd >= 0) {
        REAL(write);
        if (real_write(fd, buf, len < sizeof buf ? len : sizeof buf - 1) < 0)
            saved = errno; /* nothing to do about it: the test sees no report */
        close(fd);
    }
    inside--;
    errno = saved;
}

static int fault(int c)
{
    if (!started || inside || resolving)
        return 0;
    long n = __atomic_add_fetch(&counts[c], 1, __ATOMIC_RELAXED);
    if (c != target || (persistent ? n < target_n : n != target_n))
        return 0;
    if (fired_n)
        return 1;
    fired_n = n;
    inside++;
    void *pc[32];
    int k = backtrace(pc, 32);
    Dl_info self, libc, at;
    dladdr((void *)fault, &self);
    dladdr((void *)strlen, &libc);
    for (int i = 1; i < k; i++)
        if (dladdr(pc[i], &at) && at.dli_fbase != self.dli_fbase && at.dli_fbase != libc.dli_fbase) {
            const char *slash = strrchr(at.dli_fname, '/');
            snprintf(fired_in, sizeof fired_in, "%s", slash ? slash + 1 : at.dli_fname);
            break;
        }
    const char *t = getenv("KD_FAULT_TRACE");
    if (t && *t == '1')
        backtrace_symbols_fd(pc, k, 2);
    inside--;
    report();
    return 1;
}

/* A destructor runs after the program's atexit handlers (HDF5's among them),
 * so their calls are in the totals. */
__attribute__((destructor)) static void at_end(void)
{
    report();
    started = 0;
}

/* The program's own code: its executable's loaded segments. */
static uintptr_t prog_lo = UINTPTR_MAX, prog_hi;

static int prog_range(struct dl_phdr_info *info, size_t size, void *arg)
{
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_LOAD) {
            uintptr_t lo = info->dlpi_addr + info->dlpi_phdr[i].p_vaddr;
            if (lo < prog_lo)
                prog_lo = lo;
            if (lo + info->dlpi_phdr[i].p_memsz > prog_hi)
                prog_hi = lo + info->dlpi_phdr[i].p_memsz;
        }
    return 1; /* the first entry is the executable */
}

/* An allocation: fails when it is the chosen malloc, or the chosen kdmalloc
 * (the caller, ra, in the program's own code). */
static int alloc_fault(void *ra)
{
    int f = fault(C_MALLOC);
    if ((uintptr_t)ra >= prog_lo && (uintptr_t)ra < prog_hi)
        f |= fault(C_KDMALLOC);
    return f;
}

typedef int (*main_fn)(int, char **, char **);
static main_fn real_main;

static int wrapped_main(int argc, char **argv, char **envp)
{
    configure();
    dl_iterate_phdr(prog_range, NULL);
    started = 1;
    return real_main(argc, argv, envp);
}

int __libc_start_main(main_fn main, int argc, char **argv, void (*init)(void), void (*fini)(void),
                      void (*rtld_fini)(void), void *stack_end)
{
    typedef int (*start_fn)(main_fn, int, char **, void (*)(void), void (*)(void), void (*)(void), void *);
    start_fn real = (start_fn)resolve("__libc_start_main");
    real_main = main;
    return real(wrapped_main, argc, argv, init, fini, rtld_fini, stack_end);
}

/* ---- write ---- */

ssize_t write(int fd, const void *buf, size_t n)
{
    REAL(write);
    if (fd != 2 && fault(C_WRITE)) {
        errno = ENOSPC;
        return -1;
    }
    return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    REAL(pwrite);
    if (fd != 2 && fault(C_WRITE)) {
        errno = ENOSPC;
        return -1;
    }
    return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    REAL(pwrite64);
    if (fd != 2 && fault(C_WRITE)) {
        errno = ENOSPC;
        return -1;
    }
    return real_pwrite64(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    REAL(writev);
    if (fd != 2 && fault(C_WRITE)) {
        errno = ENOSPC;
        return -1;
    }
    return real_writev(fd, iov, cnt);
}

/* A stdio call that fails as a failing write(2) under it would: errno and
 * the stream's error indicator set. */
static int stdio_fault(FILE *f)
{
    if (f == stderr || !fault(C_WRITE))
        return 0;
    f->_flags |= _IO_ERR_SEEN_;
    errno = ENOSPC;
    return 1;
}

size_t fwrite(const void *p, size_t size, size_t n, FILE *f)
{
    REAL(fwrite);
    if (stdio_fault(f))
        return 0;
    return real_fwrite(p, size, n, f);
}

int fputs(const char *s, FILE *f)
{
    REAL(fputs);
    if (stdio_fault(f))
        return EOF;
    return real_fputs(s, f);
}

int fputc(int c, FILE *f)
{
    REAL(fputc);
    if (stdio_fault(f))
        return EOF;
    return real_fputc(c, f);
}

int putc(int c, FILE *f)
{
    REAL(putc);
    if (stdio_fault(f))
        return EOF;
    return real_putc(c, f);
}

int puts(const char *s)
{
    REAL(puts);
    if (stdio_fault(stdout))
        return EOF;
    return real_puts(s);
}

int putchar(int c)
{
    REAL(putchar);
    if (stdio_fault(stdout))
        return EOF;
    return real_putchar(c);
}

int vfprintf(FILE *f, const char *fmt, va_list ap)
{
    REAL(vfprintf);
    if (stdio_fault(f))
        return -1;
    return real_vfprintf(f, fmt, ap);
}

int fprintf(FILE *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf(f, fmt, ap);
    va_end(ap);
    return r;
}

int printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf(stdout, fmt, ap);
    va_end(ap);
    return r;
}

int fflush(FILE *f)
{
    REAL(fflush);
    if (f && stdio_fault(f))
        return EOF;
    return real_fflush(f);
}

/* ---- fsync ---- */

int fsync(int fd)
{
    REAL(fsync);
    if (fault(C_FSYNC)) {
        errno = EIO;
        return -1;
    }
    return real_fsync(fd);
}

int fdatasync(int fd)
{
    REAL(fdatasync);
    if (fault(C_FSYNC)) {
        errno = EIO;
        return -1;
    }
    return real_fdatasync(fd);
}

/* ---- rename ---- */

int rename(const char *a, const char *b)
{
    REAL(rename);
    if (fault(C_RENAME)) {
        errno = EIO;
        return -1;
    }
    return real_rename(a, b);
}

int renameat(int da, const char *a, int db, const char *b)
{
    REAL(renameat);
    if (fault(C_RENAME)) {
        errno = EIO;
        return -1;
    }
    return real_renameat(da, a, db, b);
}

int renameat2(int da, const char *a, int db, const char *b, unsigned flags)
{
    REAL(renameat2);
    if (fault(C_RENAME)) {
        errno = EIO;
        return -1;
    }
    return real_renameat2(da, a, db, b, flags);
}

/* ---- malloc ---- */

void *malloc(size_t n)
{
    if (resolving)
        return boot_alloc(n);
    REAL(malloc);
    if (alloc_fault(__builtin_return_address(0))) {
        errno = ENOMEM;
        return NULL;
    }
    return real_malloc(n);
}

void *calloc(size_t k, size_t n)
{
    if (resolving) {
        void *p = n && k > SIZE_MAX / n ? NULL : boot_alloc(k * n);
        if (p)
            memset(p, 0, k * n);
        return p;
    }
    REAL(calloc);
    if (alloc_fault(__builtin_return_address(0))) {
        errno = ENOMEM;
        return NULL;
    }
    return real_calloc(k, n);
}

void *realloc(void *p, size_t n)
{
    REAL(realloc);
    if (alloc_fault(__builtin_return_address(0))) {
        errno = ENOMEM;
        return NULL;
    }
    return real_realloc(p, n);
}

void free(void *p)
{
    if (is_boot(p))
        return;
    REAL(free);
    real_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    REAL(posix_memalign);
    if (alloc_fault(__builtin_return_address(0)))
        return ENOMEM;
    return real_posix_memalign(out, align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    REAL(aligned_alloc);
    if (alloc_fault(__builtin_return_address(0))) {
        errno = ENOMEM;
        return NULL;
    }
    return real_aligned_alloc(align, n);
}

/* ---- HDF5 ---- */

herr_t_ H5Dwrite(hid_t_ ds, hid_t_ mt, hid_t_ ms, hid_t_ fs, hid_t_ pl, const void *buf)
{
    static herr_t_ (*real)(hid_t_, hid_t_, hid_t_, hid_t_, hid_t_, const void *);
    if (!real)
        *(void **)&real = resolve("H5Dwrite");
    if (fault(C_H5DWRITE))
        return -1;
    return real(ds, mt, ms, fs, pl, buf);
}
