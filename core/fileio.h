/* fileio: whole-file reads with errors that name the file. Tested through
 * tests/test_config.c and tests/cli.sh (missing and unreadable files). */
#ifndef UNETLAB_FILEIO_H
#define UNETLAB_FILEIO_H
#include <stddef.h>

/* Reads all of path (at most max bytes) into a new NUL-terminated buffer.
 * On failure returns errcode: "cannot read 'path': <reason>". */
int file_read_all(const char *path, size_t max, int errcode, char **buf, size_t *len);

#endif
