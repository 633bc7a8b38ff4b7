/* fileio: see fileio.h. */
#include "fileio.h"
#include "err.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int file_read_all(const char *path, size_t max, int errcode, char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(errcode, "cannot read '%s': %s", path, strerror(errno));
    size_t n = 0, cap = 0;
    char *b = NULL;
    for (;;) {
        if (n + 1 >= cap) b = xrealloc(b, cap = cap ? 2 * cap : 65536);
        size_t r = fread(b + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
        if (n > max) {
            fclose(f);
            free(b);
            return err_set(errcode, "cannot read '%s': larger than %zu bytes", path, max);
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        return err_set(errcode, "cannot read '%s': read error", path);
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return 0;
}
