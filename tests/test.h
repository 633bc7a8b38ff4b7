/* test: the tiny harness every tests/test_*.c uses. Each CHECK counts one
 * assertion; TEST_MAIN_END prints "<name>: N passed, N failed" and returns
 * non-zero on any failure, which make test sums up. */
#ifndef UNETLAB_TEST_H
#define UNETLAB_TEST_H
#include <stdio.h>
#include <string.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

static int t_pass, t_fail;

#define CHECK(cond) do { if (cond) t_pass++; else { t_fail++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_MSG(cond, ...) do { if (cond) t_pass++; else { t_fail++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define CHECK_EQ_LL(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
    CHECK_MSG(a_ == b_, "%lld != %lld", a_, b_); } while (0)
#define CHECK_NEAR(a, b, tol) do { double a_ = (a), b_ = (b); \
    CHECK_MSG(fabs(a_ - b_) <= (tol), "%.9g vs %.9g (tol %g)", a_, b_, (double)(tol)); } while (0)
/* err_msg() must contain the substring s. */
#define CHECK_ERR(rc, code, s) do { int rc_ = (rc); CHECK_MSG(rc_ == (code) && strstr(err_msg(), (s)), \
    "rc %d (want %d), msg '%s' (want '%s')", rc_, (code), err_msg(), (s)); } while (0)

/* Makes a fresh directory /tmp/PREFIX<6 random characters> into buf (mkdtemp);
 * returns buf, or NULL. */
static inline char *test_tmpdir(char *buf, size_t size, const char *prefix) {
    int n = snprintf(buf, size - 7, "/tmp/%s", prefix);
    memset(buf + n, 'X', 6); /* mkdtemp's template */
    buf[n + 6] = '\0';
    return mkdtemp(buf);
}

/* A test program that cannot run here (no GPU) says why and passes nothing:
 * "<name>: skipped: <why>" then "<name>: 0 passed, 0 failed"; tests/run.sh counts it. */
#define TEST_SKIP(name, ...) do { printf("%s: skipped: ", name); printf(__VA_ARGS__); \
    printf("\n%s: 0 passed, 0 failed\n", name); return 0; } while (0)

#define TEST_MAIN_END(name) do { printf("%s: %d passed, %d failed\n", name, t_pass, t_fail); \
    return t_fail ? 1 : 0; } while (0)
#endif
