/* testcli: what the tests that drive the built binary share: the binary
 * ($UNETLAB, default build/unetlab), a scratch directory, formatting command
 * lines, and running them with their stdout captured. */
#ifndef UNETLAB_TESTCLI_H
#define UNETLAB_TESTCLI_H
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *BIN;
static char T[64];

/* Sets BIN and makes the scratch directory T (/tmp/unetlab-NAME- and six random
 * characters, by mkdtemp); exits on failure. */
static void cli_setup(const char *name) {
    BIN = getenv("UNETLAB") ? getenv("UNETLAB") : "build/unetlab";
    char prefix[40];
    snprintf(prefix, sizeof prefix, "unetlab-%s-", name);
    if (!test_tmpdir(T, sizeof T, prefix)) { perror("mkdtemp"); exit(1); }
}

/* printf into one of 8 rotating buffers: arguments of one call stay valid together. */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
    static char buf[8][4096];
    static int k;
    va_list ap;
    va_start(ap, f);
    char *b = buf[k++ % 8];
    vsnprintf(b, sizeof buf[0], f, ap);
    va_end(ap);
    return b;
}

/* Runs a shell command; *out (if out) gets its stdout, caller frees. Returns its exit status. */
static int run(const char *cmd, char **out) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = 0, cap = 1 << 16, r;
    char *buf = malloc(cap);
    while ((r = fread(buf + n, 1, cap - n - 1, p)) > 0)
        if ((n += r) + 1 >= cap) buf = realloc(buf, cap *= 2);
    buf[n] = '\0';
    int st = pclose(p);
    if (out) *out = buf;
    else free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static void cli_cleanup(void) { run(fmt("rm -rf %s", T), NULL); }

/* The first field of the first row `unetlab db query` gives for sql on db
 * (caller frees; "" when there is no row); NULL when the query fails. */
static inline char *db_cell(const char *db, const char *sql) {
    char *out = NULL, *v = NULL;
    if (run(fmt("%s db query --db %s --format csv \"%s\" 2>/dev/null", BIN, db, sql), &out) == 0) {
        char *nl = strchr(out, '\n'); /* past the header */
        if (nl) v = strndup(nl + 1, strcspn(nl + 1, ",\n"));
    }
    free(out);
    return v;
}

/* db_cell as a whole number (0 for no row); -1 when the query fails. */
static inline long long db_count(const char *db, const char *sql) {
    char *v = db_cell(db, sql);
    long long n = v ? atoll(v) : -1;
    free(v);
    return n;
}

/* A whole file, NUL-terminated (caller frees); NULL when it cannot be opened.
 * *n (if n) gets its length. */
static inline char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)(len > 0 ? len : 0) + 1);
    size_t got = fread(b, 1, (size_t)(len > 0 ? len : 0), f);
    b[got] = '\0';
    if (n) *n = got;
    fclose(f);
    return b;
}

#endif
