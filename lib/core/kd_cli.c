#include "kd_cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kd_cpu.h"
#include "kd_err.h"
#include "kd_file.h"
#include "kd_gemm.h"

static const char *help_text = "";

/* Results go to stdout through stdio, whose write errors (a full disk) only
 * show at the final flush: checked here at exit, turning a lost result into
 * exit 1 with a message.  A reader that went away (EPIPE) is no error of
 * ours: a program that keeps going without it has already said so. */
static int stdout_errno; /* of the last failed flush of a JSON line on stdout */

static void check_stdout(void)
{
    errno = 0;
    int e = fflush(stdout) ? errno : 0;
    if (!e && !ferror(stdout))
        return;
    if (!e)
        e = stdout_errno;
    if (e == EPIPE)
        return;
    fprintf(stderr, "%s: stdout: write failed%s%s%s\n", kd_progname, e ? " (" : "", e ? strerror(e) : "",
            e ? ")" : "");
    _exit(KD_EXIT_FAIL);
}

void kd_cli_stdout_failed(int e) { stdout_errno = e; }

/* The last exit handler (registered first).  Our exits are 0, 1 or 2; any
 * other status comes from a library giving up on its own (HDF5 1.10 calls
 * exit(-1), silently, when an allocation fails in H5I_register): say so and
 * make it the runtime failure it is.  The other handlers (temporaries
 * removed) have run by now. */
static void at_exit(int status, void *arg)
{
    if (status != KD_EXIT_OK && status != KD_EXIT_FAIL && status != KD_EXIT_USAGE) {
        fprintf(stderr, "%s: a library gave up (exit status %d; out of memory?)\n", kd_progname, status);
        _exit(KD_EXIT_FAIL);
    }
    check_stdout();
}

void kd_cli_init(char **argv0, const char *help, kd_std_opts *std)
{
    static int registered;
    if (!registered++)
        on_exit(at_exit, NULL);
    char *a = argv0 ? *argv0 : NULL, *slash = a ? strrchr(a, '/') : NULL;
    if (slash && slash[1])
        *argv0 = a = slash + 1;
    kd_progname = a && *a ? a : "kdpipe";
    help_text = help ? help : "";
    std->threads = 0;
    std->seed = 0;
    std->quiet = 0;
    std->progress = 0;
    std->progress_t = 0;
}

void kd_cli_output(const char *path)
{
    if (path && kd_file_check_target(path))
        kd_die_err();
}

void kd_usage(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", kd_progname);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help' for more information.\n", kd_progname);
    exit(KD_EXIT_USAGE);
}

static const char *version_note;
void kd_cli_version_note(const char *line) { version_note = line; }

int kd_cli_std(int opt, const char *arg, kd_std_opts *std)
{
    switch (opt) {
    case 'h':
        fputs(help_text, stdout);
        exit(KD_EXIT_OK);
    case KD_OPT_VERSION:
        printf("%s (kdpipe) %s\nBLIS kernels: %s\n", kd_progname, KD_VERSION, kd_gemm_arch());
        if (version_note)
            printf("%s\n", version_note);
        exit(KD_EXIT_OK);
    case KD_OPT_THREADS:
        std->threads = (int)kd_parse_long("--threads", arg, 1, 1024);
        return 1;
    case KD_OPT_SEED:
        std->seed = kd_parse_u64("--seed", arg);
        return 1;
    case KD_OPT_QUIET:
        std->quiet = 1;
        return 1;
    case KD_OPT_PROGRESS:
        std->progress = 1;
        return 1;
    case '?': /* getopt_long already printed what was wrong */
        fprintf(stderr, "Try '%s --help' for more information.\n", kd_progname);
        exit(KD_EXIT_USAGE);
    case ':':
        kd_usage("option requires an argument");
    }
    return 0;
}

int kd_cli_threads(const kd_std_opts *std)
{
    if (std->threads <= 0)
        return kd_cpu_available();
    static int warned;
    int n = kd_cpu_usable();
    if (std->threads > n && !warned) {
        warned = 1;
        kd_warn("--threads %d is more than the %d CPU%s this process may use (affinity mask, cgroup quota): "
                "it will run slower, not faster", std->threads, n, n == 1 ? "" : "s");
    }
    return std->threads;
}

long kd_parse_long(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end)
        kd_usage("%s: '%s' is not an integer", opt, s);
    if (v < lo || v > hi)
        kd_usage("%s: %ld is outside [%ld, %ld]", opt, v, lo, hi);
    return v;
}

double kd_parse_double(const char *opt, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        kd_usage("%s: '%s' is not a number", opt, s);
    if (v < lo || v > hi)
        kd_usage("%s: %g is outside [%g, %g]", opt, v, lo, hi);
    return v;
}

uint64_t kd_parse_u64(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    if (*s == '-')
        kd_usage("%s: '%s' must not be negative", opt, s);
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end)
        kd_usage("%s: '%s' is not a non-negative integer", opt, s);
    return (uint64_t)v;
}

void kd_parse_size(const char *opt, const char *s, int *h, int *w)
{
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10), b = a;
    if (!errno && end != s && (*end == 'x' || *end == 'X')) {
        const char *p = end + 1;
        b = strtol(p, &end, 10);
        if (end == p)
            b = -1;
    }
    if (errno || *end || a < 1 || b < 1 || a > 65536 || b > 65536)
        kd_usage("%s: '%s' is not a size like 32 or 32x32", opt, s);
    *h = (int)a;
    *w = (int)b;
}

static int progress_on(const kd_std_opts *std)
{
    return !std->quiet && (std->progress || isatty(2));
}

void kd_progress(const kd_std_opts *std, const char *fmt, ...)
{
    if (!progress_on(std))
        return;
    va_list ap;
    fprintf(stderr, "\r%s: ", kd_progname);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\033[K", stderr);
}

void kd_progress_end(const kd_std_opts *std)
{
    if (progress_on(std))
        fputc('\n', stderr);
}

/* 42s, 3m05s, 2h07m */
static void fmt_secs(char *buf, size_t len, double t)
{
    long s = t < 0 ? 0 : t > 1e8 ? 100000000L : (long)(t + 0.5);
    if (s < 60)
        snprintf(buf, len, "%lds", s);
    else if (s < 3600)
        snprintf(buf, len, "%ldm%02lds", s / 60, s % 60);
    else
        snprintf(buf, len, "%ldh%02ldm", s / 3600, s / 60 % 60);
}

void kd_progress_run(kd_std_opts *s, long done, long total, double rate, const char *unit, const char *fmt, ...)
{
    if (!progress_on(s))
        return;
    double now = kd_now();
    int last = total > 0 && done >= total;
    if (s->progress_t > 0 && now - s->progress_t < 0.2 && !last)
        return;
    s->progress_t = now;
    va_list ap;
    fprintf(stderr, "\r%s: ", kd_progname);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (total > 0)
        fprintf(stderr, "  %ld/%ld %.0f%%", done, total, 100.0 * (double)done / (double)total);
    else
        fprintf(stderr, "  %ld", done);
    if (rate > 0 && isfinite(rate)) {
        fprintf(stderr, "  %.0f %s/s", rate, unit ? unit : "");
        if (total > 0) {
            char eta[32];
            fmt_secs(eta, sizeof eta, (double)(total > done ? total - done : 0) / rate);
            fprintf(stderr, "  %s left", eta);
        }
    }
    if (isatty(2))
        fputs("\033[K", stderr); /* clear what a longer line left */
}

double kd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void json_put(kd_json *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void json_put(kd_json *j, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(j->buf + j->len, sizeof j->buf - j->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof j->buf - j->len) {
        j->len += (size_t)n;
        return;
    }
    /* too long for the buffer: what is built so far, then this piece */
    fwrite(j->buf, 1, j->len, j->f);
    j->len = 0;
    va_start(ap, fmt);
    vfprintf(j->f, fmt, ap);
    va_end(ap);
}

static void json_key(kd_json *j, const char *key)
{
    json_put(j, j->n++ ? ", \"%s\": " : "\"%s\": ", key);
}

void kd_json_begin(kd_json *j, FILE *f)
{
    j->f = f;
    j->n = 0;
    j->len = 0;
    json_put(j, "{");
}

/* The JSON spelling of byte c: itself, or an escape. */
static const char *json_char(unsigned char c, char buf[8])
{
    if (c == '"' || c == '\\')
        snprintf(buf, 8, "\\%c", c);
    else if (c < 0x20 || c == 0x7f)
        snprintf(buf, 8, "\\u%04x", c);
    else
        buf[0] = (char)c, buf[1] = 0;
    return buf;
}

void kd_json_str(kd_json *j, const char *key, const char *val)
{
    char b[8];
    json_key(j, key);
    json_put(j, "\"");
    for (const unsigned char *p = (const unsigned char *)val; *p; p++)
        json_put(j, "%s", json_char(*p, b));
    json_put(j, "\"");
}

void kd_json_fputs(FILE *f, const char *s)
{
    char b[8];
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        fputs(json_char(*p, b), f);
    fputc('"', f);
}

void kd_json_num(kd_json *j, const char *key, double val)
{
    json_key(j, key);
    if (isfinite(val))
        json_put(j, "%.9g", val);
    else
        json_put(j, "null");
}

void kd_json_int(kd_json *j, const char *key, long long val)
{
    json_key(j, key);
    json_put(j, "%lld", val);
}

void kd_json_raw(kd_json *j, const char *key, const char *raw)
{
    json_key(j, key);
    json_put(j, "%s", raw);
}

void kd_json_end(kd_json *j)
{
    json_put(j, "}\n");
    if ((fwrite(j->buf, 1, j->len, j->f) != j->len || fflush(j->f)) && j->f == stdout)
        stdout_errno = errno;
    j->len = 0;
}
