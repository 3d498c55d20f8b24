/* kd_err — error reporting shared by libkd and every program.
 *
 * Library functions never print and never exit: on failure they record
 * "context: problem" with kd_err_set() and return -1 (or NULL).  A program
 * prints that as "program: context: problem" on stderr and exits 1.
 * Exit codes: 0 success, 1 runtime failure, 2 usage error. */
#ifndef KD_ERR_H
#define KD_ERR_H

#include <stdarg.h>

enum { KD_EXIT_OK = 0, KD_EXIT_FAIL = 1, KD_EXIT_USAGE = 2 };

/* The program name used as the prefix of every message (set by kd_cli_init). */
extern const char *kd_progname;

/* Record the last library error (printf-style); it replaces the previous one. */
void kd_err_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prepend context to the recorded error: "ctx: <old message>". */
void kd_err_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *kd_err_get(void);

/* "program: message" on stderr. */
void kd_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "program: message" on stderr, then exit(code). */
_Noreturn void kd_die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "program: <recorded library error>" on stderr, then exit(1). */
_Noreturn void kd_die_err(void);

#endif
