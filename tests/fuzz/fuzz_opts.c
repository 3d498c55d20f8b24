/* fuzz_opts — the options of every program, through the real parsing code
 * of bin/NAME.c (each compiled with -Dmain=fuzz_main_NAME), and the option
 * parsers of the library that those programs defer to (loss options,
 * schedules, augmentation kinds, dtypes, cgroup CPU quotas).
 *
 * Input: a selector byte, then words separated by NUL or newline bytes.
 * A program's main runs only through its getopt_long loop: the link wraps
 * getopt_long (-Wl,--wrap=getopt_long) and jumps back here when it returns
 * -1 (the options are parsed; what follows opens files and computes), and
 * wraps exit (-Wl,--wrap=exit) so that --help, --version and usage errors
 * (exit 0 or 2, the programs' documented behaviour) come back here too.
 * Both wraps act only inside a program's main. */
#include <getopt.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "scratch.h"
#include "kd_aug_policy.h"
#include "kd_cpu.h"
#include "kd_loss.h"
#include "kd_optim.h"
#include "kd_tensor.h"

#define PROGS(X)                                                                                               \
    X(aggregate) X(augment) X(dataset) X(detect_eval) X(detect_train) X(detect) X(distill_step) X(linprobe)    \
    X(model_init) X(teacher_extract) X(tensor_info)
#define DECL(n) int fuzz_main_##n(int argc, char **argv);
PROGS(DECL)
#define ENTRY(n) {#n, fuzz_main_##n},
static const struct {
    const char *name;
    int (*main)(int, char **);
} progs[] = {PROGS(ENTRY)};
enum { NPROGS = sizeof progs / sizeof progs[0] };

static jmp_buf back;
static volatile int in_main;

_Noreturn void __real_exit(int code);
_Noreturn void __wrap_exit(int code)
{
    if (in_main)
        longjmp(back, 1);
    __real_exit(code);
}

int __real_getopt_long(int argc, char *const *argv, const char *s, const struct option *l, int *idx);
int __wrap_getopt_long(int argc, char *const *argv, const char *s, const struct option *l, int *idx)
{
    int r = __real_getopt_long(argc, argv, s, l, idx);
    if (r == -1 && in_main)
        longjmp(back, 2);
    return r;
}

#define MAXW 64

/* Words of data[0..size) split at NUL and newline, each a malloc'ed string
 * (exact size: a read past a word is a read past its block). */
static int split(const uint8_t *data, size_t size, char **w)
{
    int n = 0;
    size_t i = 0;
    while (i <= size && n < MAXW) {
        size_t j = i;
        while (j < size && data[j] && data[j] != '\n')
            j++;
        w[n] = malloc(j - i + 1);
        if (!w[n])
            break;
        memcpy(w[n], data + i, j - i);
        w[n][j - i] = 0;
        n++;
        i = j + 1;
    }
    return n;
}

static void run_prog(int p, int nw, char **w)
{
    char *argv[MAXW + 2];
    char name[32];
    snprintf(name, sizeof name, "%s", progs[p].name);
    for (char *s = name; *s; s++)
        if (*s == '_')
            *s = '-';
    argv[0] = name;
    for (int i = 0; i < nw; i++)
        argv[i + 1] = w[i];
    argv[nw + 1] = NULL;
    optind = 0; /* GNU getopt: full re-initialisation */
    opterr = 1;
    in_main = 1;
    if (!setjmp(back))
        progs[p].main(nw + 1, argv);
    in_main = 0;
}

/* Loss options: the first word names the loss, then NAME=VALUE words. */
static void run_loss(int nw, char **w)
{
    if (nw < 1)
        return;
    const kd_loss_module *mod = kd_loss_find(w[0]);
    if (!mod)
        return;
    void *opts = calloc(1, mod->opts_size ? mod->opts_size : 1);
    if (opts && kd_loss_opts_defaults(mod, opts) == 0)
        for (int i = 1; i < nw; i++) {
            char *eq = strchr(w[i], '=');
            if (!eq)
                continue;
            *eq = 0;
            kd_loss_opts_set(mod, opts, w[i], eq + 1);
            *eq = '=';
        }
    free(opts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *w[MAXW];
    int nw = split(data + 1, size - 1, w), sel = data[0] % (NPROGS + 2);
    if (sel < NPROGS)
        run_prog(sel, nw, w);
    else if (sel == NPROGS)
        run_loss(nw, w);
    else
        for (int i = 0; i < nw; i++) {
            kd_sched s;
            kd_sched_parse(&s, w[i]);
            kd_aug_kind_parse(w[i]);
            kd_dtype_parse(w[i]);
            kd_cpu_quota_parse(w[i]);
        }
    for (int i = 0; i < nw; i++)
        free(w[i]);
    return 0;
}
