/* err: one error slot per thread, documented exit codes, checked allocation.
 * Bad user input is returned up to the command as an ERR_* code with a one-line
 * message (err_set); environment faults (out of memory) stop at once (die).
 * Tested through every bad-input case in tests/test_safetensors.c, tests/cli.sh. */
#ifndef UNETLAB_ERR_H
#define UNETLAB_ERR_H
#include <stddef.h>

/* Exit codes of the unetlab command; README.md "Exit codes" lists the same. */
enum {
    ERR_OK = 0,
    ERR_RUNTIME = 1, /* environment fault: out of memory, a library call failed */
    ERR_USAGE = 2,   /* unknown command or flag, bad flag value */
    ERR_MODEL = 3,   /* config.json or weights: unreadable, malformed, not matching */
    ERR_INPUT = 4,   /* input / calibration tensors: unreadable, malformed, wrong shape */
    ERR_OUTPUT = 5,  /* an output path cannot be written */
    ERR_DB = 6,      /* database: corrupt, read-only, newer schema */
    ERR_PLAN = 7,    /* a plan or a --drop name that does not fit the model */
    /* 8: `unetlab report` drew no pictures (gnuplot missing): REPORT_EXIT_NO_GNUPLOT */
    ERR_UNSTABLE = 9, /* a timing too noisy to use (schedule: an unstable teacher profile) */
    ERR_TARGET = 10, /* schedule: the target cannot be reached (nothing left to remove); stages kept */
};

/* Records a one-line message for the current error and returns code, so that
 * callers can write `return err_set(ERR_MODEL, "...")`. */
int err_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the recorded message with context ("'x.json': " + old), returns code. */
int err_wrap(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *err_msg(void);
int err_code(void);

/* Prints "unetlab: warning: ..." as one line (control characters from a file
 * become '?') on stderr. */
void err_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Bytes of memory available for a new allocation (MemAvailable), -1 unknown. */
double mem_available(void);
/* ERR_RUNTIME "WHAT needs about N GB (DETAIL, estimated ...); this machine
 * has M GB available" when need exceeds what is available; 0 otherwise. */
int mem_check(const char *what, double need, const char *detail);

/* Environment faults: print "unetlab: fatal: ..." and exit(ERR_RUNTIME). */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
/* For weights and activations: 64-byte aligned, so that vector loops and
 * oneDNN see the same alignment on every run (their sums then round the same
 * way: prefix reuse needs that). Freed with free(). */
void *xmalloc_big(size_t n);
char *xstrdup(const char *s);
/* snprintf into a fresh buffer; caller frees. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2), nonnull(1)));

#endif
