/* dtype: the element type of device weights and activations. The CPU path
 * is float32 throughout; the CUDA path runs in fp16 (default), bf16 or fp32,
 * always accumulating in fp32. Parsed from --dtype. */
#ifndef UNETLAB_DTYPE_H
#define UNETLAB_DTYPE_H
#include <stddef.h>
#include <string.h>

typedef enum { DTYPE_F32 = 0, DTYPE_F16 = 1, DTYPE_BF16 = 2 } DType;

static inline size_t dtype_size(DType t) { return t == DTYPE_F32 ? 4 : 2; }
static inline const char *dtype_name(DType t) { return t == DTYPE_F32 ? "fp32" : t == DTYPE_F16 ? "fp16" : "bf16"; }
/* 0 on success; -1 for a name that is not fp32, fp16 or bf16. */
static inline int dtype_parse(const char *s, DType *out) {
    if (!strcmp(s, "fp32")) *out = DTYPE_F32;
    else if (!strcmp(s, "fp16")) *out = DTYPE_F16;
    else if (!strcmp(s, "bf16")) *out = DTYPE_BF16;
    else return -1;
    return 0;
}
#endif
