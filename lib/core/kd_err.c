#include "kd_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *kd_progname = "kdpipe";

static _Thread_local char err_buf[1024];

void kd_err_set(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
}

void kd_err_prefix(const char *fmt, ...)
{
    char ctx[512], old[sizeof err_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    memcpy(old, err_buf, sizeof old);
    size_t n = strlen(ctx);
    if (n > sizeof err_buf - 3)
        n = sizeof err_buf - 3;
    memcpy(err_buf, ctx, n);
    memcpy(err_buf + n, ": ", 2);
    size_t m = strlen(old);
    if (m > sizeof err_buf - n - 3)
        m = sizeof err_buf - n - 3;
    memcpy(err_buf + n + 2, old, m);
    err_buf[n + 2 + m] = 0;
}

const char *kd_err_get(void)
{
    return err_buf[0] ? err_buf : "unknown error";
}

/* One write per message: several processes of an MPI job share stderr, and
 * unbuffered pieces of their messages would interleave. */
static void vwarn(const char *fmt, va_list ap)
{
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "%s: ", kd_progname);
    if (n < 0 || (size_t)n >= sizeof buf)
        n = 0;
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    if (m < 0)
        m = 0;
    size_t len = (size_t)n + (size_t)m < sizeof buf - 1 ? (size_t)n + (size_t)m : sizeof buf - 2;
    buf[len] = '\n';
    fwrite(buf, 1, len + 1, stderr);
}

void kd_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwarn(fmt, ap);
    va_end(ap);
}

void kd_die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwarn(fmt, ap);
    va_end(ap);
    exit(code);
}

void kd_die_err(void)
{
    kd_die(KD_EXIT_FAIL, "%s", kd_err_get());
}
