/* fileio: see fileio.h. */
#include "fileio.h"
#include "err.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind_of(mode_t m) {
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device"
           : S_ISSOCK(m) ? "a socket" : S_ISLNK(m) ? "a symbolic link" : "not a regular file";
}

int file_open_regular(const char *path, int errcode) {
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return err_set(errcode, "cannot read '%s': %s", path, strerror(errno)), -1;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return err_set(errcode, "cannot read '%s': %s", path, strerror(e)), -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return err_set(errcode, "cannot read '%s': it is %s, not a regular file", path, kind_of(sb.st_mode)), -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

int file_read_all(const char *path, size_t max, int errcode, char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    int fd = file_open_regular(path, errcode);
    if (fd < 0) return errcode;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return err_set(errcode, "cannot read '%s': %s", path, strerror(errno));
    }
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

static void out_free(OutFile *o) {
    free(o->path);
    free(o->tmp);
    memset(o, 0, sizeof *o);
    o->fd = -1;
}

int out_begin(OutFile *o, const char *path) {
    memset(o, 0, sizeof *o);
    o->fd = -1;
    struct stat sb;
    char *target = NULL;
    if (lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode)) { /* write the link's target, keep the link */
        char buf[PATH_MAX];
        if (!realpath(path, buf)) {
            /* a dangling link: its target is created (as `cp` would), or its directory is missing */
            ssize_t n = readlink(path, buf, sizeof buf - 1);
            if (n < 0) return err_set(ERR_OUTPUT, "cannot write '%s': %s", path, strerror(errno));
            buf[n] = '\0';
            if (buf[0] != '/') { /* relative to the link's directory */
                const char *slash = strrchr(path, '/');
                target = slash ? xasprintf("%.*s/%s", (int)(slash - path), path, buf) : xstrdup(buf);
            } else target = xstrdup(buf);
        } else target = xstrdup(buf);
    } else target = xstrdup(path);
    o->path = target;
    if (stat(target, &sb) == 0) {
        if (S_ISCHR(sb.st_mode) || S_ISFIFO(sb.st_mode)) { /* /dev/null, a pipe: write it directly */
            o->fd = open(target, O_WRONLY | O_CLOEXEC);
            if (o->fd < 0) {
                int e = errno;
                out_free(o);
                return err_set(ERR_OUTPUT, "cannot write '%s': %s", path, strerror(e));
            }
            return 0;
        }
        if (!S_ISREG(sb.st_mode)) {
            const char *k = kind_of(sb.st_mode);
            out_free(o);
            return err_set(ERR_OUTPUT, "cannot write '%s': it is %s; give a file name", path, k);
        }
    } else if (errno != ENOENT) {
        int e = errno;
        out_free(o);
        return err_set(ERR_OUTPUT, "cannot write '%s': %s", path, strerror(e));
    }
    o->tmp = xasprintf("%s.tmp.%ld", target, (long)getpid());
    o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (o->fd < 0) {
        int e = errno;
        int rc = err_set(ERR_OUTPUT, "cannot write '%s': cannot create its temporary file '%s': %s", path, o->tmp, strerror(e));
        out_free(o);
        return rc;
    }
    return 0;
}

FILE *out_stream(OutFile *o) {
    if (!o->f && o->fd >= 0) o->f = fdopen(o->fd, "w");
    return o->f;
}

int out_commit(OutFile *o) {
    int e = 0;
    if (o->f) {
        if (fflush(o->f) || ferror(o->f)) e = errno ? errno : EIO;
    }
    if (!e && o->tmp && fsync(o->fd) != 0) e = errno;
    int closed = o->f ? fclose(o->f) : close(o->fd);
    if (!e && closed) e = errno;
    o->f = NULL, o->fd = -1;
    if (!e && o->tmp && rename(o->tmp, o->path) != 0) e = errno;
    if (e && o->tmp) unlink(o->tmp);
    int rc = e ? err_set(ERR_OUTPUT, "cannot write '%s': %s", o->path, strerror(e)) : 0;
    out_free(o);
    return rc;
}

void out_abort(OutFile *o) {
    if (o->f) fclose(o->f);
    else if (o->fd >= 0) close(o->fd);
    if (o->tmp) unlink(o->tmp);
    out_free(o);
}

int out_probe(const char *path) {
    OutFile o;
    int rc = out_begin(&o, path);
    if (!rc) out_abort(&o);
    return rc;
}

int out_write_text(const char *path, const char *text) {
    OutFile o;
    int rc = out_begin(&o, path);
    if (rc) return rc;
    FILE *f = out_stream(&o);
    if (!f) {
        out_abort(&o);
        return err_set(ERR_OUTPUT, "cannot write '%s': %s", path, strerror(errno));
    }
    fputs(text, f);
    fputc('\n', f);
    return out_commit(&o);
}

char *path_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    return !slash ? xstrdup(".") : xasprintf("%.*s", slash == path ? 1 : (int)(slash - path), path);
}
