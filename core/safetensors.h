/* safetensors: read (mmap + cJSON header, every offset and shape validated
 * against the file) and write float32 tensors in the safetensors format.
 * Tested by tests/test_safetensors.c (valid and malformed files made in the
 * test) and fuzzed by tests/fuzz_safetensors.c. */
#ifndef UNETLAB_SAFETENSORS_H
#define UNETLAB_SAFETENSORS_H
#include "dtype.h"
#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    DType dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    size_t nbytes;
    const void *data; /* inside the mapping (or the caller's buffer); may be unaligned */
    const char *other; /* NULL, or the name of a dtype unetlab does not compute with ("I64") */
} StTensor;

typedef struct SafeTensors {
    char *path;     /* for messages */
    void *map;      /* mmap of the whole file, NULL for st_parse on a caller's buffer */
    size_t map_size;
    int n;
    StTensor *t;    /* sorted by name: the F32, F16 and BF16 tensors */
    int n_other;
    StTensor *other; /* the tensors of other dtypes (I64, U8, F64, ...): validated, never converted */
} SafeTensors;

/* Maps `path` and validates it. On failure returns `errcode` with a one-line
 * message naming the file (err_msg) and leaves *st empty (st_close is safe). */
int st_open(SafeTensors *st, const char *path, int errcode);
/* Validates a file image already in memory; `buf` must outlive *st. */
int st_parse(SafeTensors *st, const void *buf, size_t size, const char *label, int errcode);
void st_close(SafeTensors *st);
/* Tells the kernel that t's bytes of a mapped file will not be read again:
 * its pages leave this process's memory (they are read again from the file
 * if touched). Nothing for a caller's buffer. */
void st_release(const SafeTensors *st, const StTensor *t);

const StTensor *st_find(const SafeTensors *st, const char *name);
/* The dtype name of tensor `name` when the file holds it in a dtype unetlab
 * does not compute with (st_find does not find those), else NULL. */
const char *st_other_dtype(const SafeTensors *st, const char *name);
/* The dtype's name in safetensors headers: "F32", "F16", "BF16". */
const char *st_dtype_name(DType d);
/* Converts t's elements to float32 into out[t->numel]. */
void st_to_f32(const StTensor *t, float *out);

/* One tensor to write: float32 data, stored as dtype (F32 unless set; F16 and
 * BF16 round to nearest even). */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float *data;
    DType dtype;
} StOut;

/* Writes n tensors to path (via a temporary file and rename, so a
 * failed write leaves no half file). Returns 0 or ERR_OUTPUT naming path. */
int st_write(const char *path, const StOut *t, int n);

#endif
