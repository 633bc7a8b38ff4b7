/* fileio: how unetlab opens the files it reads and writes, so that every
 * command behaves the same with hostile paths.
 *
 * Reading: file_open_regular opens without blocking and checks the type
 * before reading a byte: a FIFO (which would block forever), a directory, a
 * device or a socket is refused with a message naming the path and what it is.
 *
 * Writing (OutFile): a regular file, or a path that does not exist yet, is
 * written to a temporary file beside it (PATH.tmp.PID, named in any error
 * about it), synced, and renamed over PATH only when complete, so a run that
 * dies leaves the old file whole. A symlink is followed: its target is
 * replaced the same way and the link stays. A character device or a FIFO
 * (/dev/null, a pipe) is written directly: renaming over it would replace the
 * node. Anything else (a directory, a block device, a socket) is refused.
 * Tested through tests/test_config.c and tests/cli.sh. */
#ifndef UNETLAB_FILEIO_H
#define UNETLAB_FILEIO_H
#include <stddef.h>
#include <stdio.h>

/* Opens path read-only if it is a regular file; returns the fd, or -1 with
 * errcode set: "cannot read 'path': <reason>" (or "... is a FIFO, not a
 * regular file"). */
int file_open_regular(const char *path, int errcode);

/* Reads all of path (at most max bytes) into a new NUL-terminated buffer.
 * On failure returns errcode: "cannot read 'path': <reason>". */
int file_read_all(const char *path, size_t max, int errcode, char **buf, size_t *len);

typedef struct {
    char *path;   /* where the data lands: PATH, or a symlink's target */
    char *tmp;    /* the temporary file, NULL when writing directly */
    int fd;
    FILE *f;      /* a stream over fd, made by out_stream */
} OutFile;

/* Starts writing path: checks what is there and creates the temporary file.
 * ERR_OUTPUT naming path (or the temporary file) on failure. */
int out_begin(OutFile *o, const char *path);
/* A stdio stream over the file being written (owned by o). */
FILE *out_stream(OutFile *o);
/* Flushes, syncs and renames the temporary file over the target; frees o.
 * ERR_OUTPUT naming the target when a write failed on the way. */
int out_commit(OutFile *o);
/* Gives up: removes the temporary file; frees o. Safe after a failed out_begin. */
void out_abort(OutFile *o);
/* Checks now that path can be written (out_begin, then out_abort): a
 * command finds an unwritable output before its work, not after. */
int out_probe(const char *path);
/* Writes text and a newline to path through an OutFile. */
int out_write_text(const char *path, const char *text);
/* The directory part of path, allocated: "." for a bare name, "/" for "/x". */
char *path_dir(const char *path);

#endif
