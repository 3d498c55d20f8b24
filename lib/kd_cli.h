/* kd_cli — the conventions every kdpipe program shares (DESIGN.md §3):
 * --help to stdout, --version (with the BLIS kernels chosen), --quiet,
 * --threads N, --seed S, --progress, usage errors with exit 2, a progress line on stderr
 * when it is a TTY, and results as JSON lines on stdout.
 *
 * A program's getopt_long table ends with KD_STD_LONGOPTS, and its switch
 * hands every option it does not know to kd_cli_std(). */
#ifndef KD_CLI_H
#define KD_CLI_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include "kd_err.h"

#define KD_VERSION "0.1.0"

enum {
    KD_OPT_VERSION = 0x1000,
    KD_OPT_THREADS,
    KD_OPT_SEED,
    KD_OPT_QUIET,
    KD_OPT_PROGRESS,
    KD_OPT_PROG = 0x1100 /* first value free for a program's own long options */
};

#define KD_STD_LONGOPTS                                   \
    {"help", no_argument, 0, 'h'},                        \
    {"version", no_argument, 0, KD_OPT_VERSION},          \
    {"threads", required_argument, 0, KD_OPT_THREADS},    \
    {"seed", required_argument, 0, KD_OPT_SEED},          \
    {"quiet", no_argument, 0, KD_OPT_QUIET},             \
    {"progress", no_argument, 0, KD_OPT_PROGRESS}

typedef struct {
    int threads;   /* 0 = all cores */
    uint64_t seed; /* default 0 */
    int quiet;
    int progress;      /* --progress: the progress line even when stderr is not a terminal */
    double progress_t; /* when kd_progress_run last wrote (kd_now); 0: never */
} kd_std_opts;

/* Sets kd_progname from *argv0 (&argv[0] of main) and the help text
 * printed by --help.  *argv0 is pointed at its last path component (the
 * string itself is left alone: ps shows the command as run), so that
 * getopt's own messages ("option '--x' requires an argument") name the
 * program as every other message does, not by the path it was run as. */
void kd_cli_init(char **argv0, const char *help, kd_std_opts *std);
/* One more line for --version (e.g. kd_dist_describe()); NULL: none. */
void kd_cli_version_note(const char *line);
/* The errno of a failed write to stdout made outside kd_json (a stream
 * writer), so that the check at exit knows it (EPIPE: a reader that has
 * gone, no message). */
void kd_cli_stdout_failed(int e);
/* Handles 'h', '?', ':' and the KD_OPT_* values; returns 1 if it handled
 * opt, 0 if opt is the program's own.  --help/--version exit 0, bad values
 * exit 2. */
int kd_cli_std(int opt, const char *arg, kd_std_opts *std);
/* Number of threads to use: --threads (with a warning, once, when it is more
 * than the CPUs the process may use), or kd_cpu_available(). */
int kd_cli_threads(const kd_std_opts *std);

/* Before any work: exit 1 unless path may take an output written beside it
 * and renamed over it (kd_file_check_target: a regular file or nothing, in
 * a directory that takes a new file).  NULL is skipped. */
void kd_cli_output(const char *path);

/* "program: message\nTry 'program --help'." on stderr, exit 2. */
_Noreturn void kd_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Strict number parsing for option values: on a bad value or one outside
 * [lo, hi] they call kd_usage naming the option. */
long kd_parse_long(const char *opt, const char *s, long lo, long hi);
double kd_parse_double(const char *opt, const char *s, double lo, double hi);
uint64_t kd_parse_u64(const char *opt, const char *s);
/* "HxW" or "S" (square). */
void kd_parse_size(const char *opt, const char *s, int *h, int *w);

/* Progress on stderr, overwriting one line: when stderr is a TTY, or
 * always with --progress; never with --quiet.  kd_progress_end() finishes
 * the line. */
void kd_progress(const kd_std_opts *std, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kd_progress_end(const kd_std_opts *std);

/* A progress line on stderr, rewritten in place, at most ~5 times a second:
 *   "<prog>: <text>  <done>/<total> <pct>%  <rate> <unit>/s  <eta> left".
 * done, total and rate count the same unit (images, frames, ...): rate is
 * units per second, so the time left is (total - done) / rate seconds,
 * written as 42s, 3m05s or 2h07m.  total <= 0 (length unknown): no
 * percentage and no time left; rate <= 0: no rate and no time left.  The
 * line is written when stderr is a terminal, or always with --progress,
 * never with --quiet; a call with done >= total > 0 always writes (the
 * last line is complete).  End it with kd_progress_end(). */
void kd_progress_run(kd_std_opts *s, long done, long total, double rate, const char *unit, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Monotonic seconds. */
double kd_now(void);

/* One JSON object on one line: kd_json_begin(&j, f); kd_json_str(&j, "k",
 * "v"); kd_json_num(&j, "x", 1.5); kd_json_end(&j) writes it and flushes.
 * The line is built in memory and written whole by kd_json_end, so an error
 * between begin and end leaves no partial line.  Non-finite numbers are
 * written as null. */
typedef struct {
    FILE *f;
    int n;
    size_t len;
    char buf[8192]; /* a longer line is written in pieces */
} kd_json;
void kd_json_begin(kd_json *j, FILE *f);
void kd_json_str(kd_json *j, const char *key, const char *val);
/* s as a JSON string literal, quotes included: '"' and '\\' escaped,
 * control characters as \\u00XX (never dropped). */
void kd_json_fputs(FILE *f, const char *s);
void kd_json_num(kd_json *j, const char *key, double val);
void kd_json_int(kd_json *j, const char *key, long long val);
/* A key whose value is written raw (a nested object or array the caller built). */
void kd_json_raw(kd_json *j, const char *key, const char *raw);
void kd_json_end(kd_json *j);

#endif
