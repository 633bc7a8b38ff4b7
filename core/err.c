/* err: see err.h. */
#include "err.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

static _Thread_local char g_msg[1024];
static _Thread_local int g_code;

/* Messages are one line: a control character from a file (a name with a
 * newline in it) must not split them. */
static void one_line(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = '?';
}

int err_set(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    one_line(g_msg);
    g_code = code;
    return code;
}

int err_wrap(int code, const char *fmt, ...) {
    char prefix[512], old[sizeof g_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_msg, sizeof old);
    size_t n = strlen(prefix);
    if (n >= sizeof g_msg) n = sizeof g_msg - 1;
    memcpy(g_msg, prefix, n);
    size_t m = strlen(old);
    if (m > sizeof g_msg - 1 - n) m = sizeof g_msg - 1 - n;
    memcpy(g_msg + n, old, m);
    g_msg[n + m] = '\0';
    one_line(g_msg);
    g_code = code;
    return code;
}

void err_warn(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    one_line(msg);
    fprintf(stderr, "unetlab: warning: %s\n", msg);
}

const char *err_msg(void) { return g_msg; }
int err_code(void) { return g_code; }

void die(const char *fmt, ...) {
    va_list ap;
    fputs("unetlab: fatal: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(ERR_RUNTIME);
}

double mem_available(void) {
    /* read(2) into the stack: this also runs when malloc has just failed */
    int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    const char *p = strstr(buf, "MemAvailable:");
    long long kb;
    return p && sscanf(p, "MemAvailable: %lld kB", &kb) == 1 ? 1024.0 * (double)kb : -1;
}

/* Out of memory: one error line with how much was asked and how much there is. */
static void oom(double bytes) {
    double avail = mem_available();
    char have[160] = "";
    if (avail >= 0) snprintf(have, sizeof have, "; %.2f GB available (MemAvailable)", avail / 1e9);
    struct rlimit rl; /* a ulimit -v the machine's memory does not show */
    if (!getrlimit(RLIMIT_AS, &rl) && rl.rlim_cur != RLIM_INFINITY)
        snprintf(have + strlen(have), sizeof have - strlen(have), ", address space limited to %.2f GB (ulimit -v)",
                 (double)rl.rlim_cur / 1e9);
    fprintf(stderr, "unetlab: error: out of memory: could not allocate %.0f bytes (%.3f GB)%s; a smaller --batch, size"
                    " or calibration set needs less\n", bytes, bytes / 1e9, have);
    exit(ERR_RUNTIME);
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom((double)n);
    return p;
}

void *xmalloc_big(size_t n) {
    size_t align = 64, size = n ? (n + align - 1) / align * align : align;
    void *p = NULL;
    if (posix_memalign(&p, align, size)) oom((double)n);
    return p;
}

void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom((double)n * (double)size);
    return p;
}

void *xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) oom((double)n);
    return p;
}

int mem_check(const char *what, double need, const char *detail) {
    double avail = mem_available();
    if (avail < 0 || need <= avail) return 0;
    return err_set(ERR_RUNTIME, "%s needs about %.1f GB (%s, estimated from the module tree); this machine has %.1f GB"
                   " available (MemAvailable): give a smaller --batch or size", what, need / 1e9, detail, avail / 1e9);
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

char *xasprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char probe[1];
    int n = vsnprintf(probe, sizeof probe, fmt, ap); /* length only */
    va_end(ap);
    char *s = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}
