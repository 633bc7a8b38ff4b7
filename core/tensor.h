/* tensor: a float32 host tensor, row-major, shapes in PyTorch order
 * (outermost first). The CPU reference path works on these alone.
 * Tested through tests/test_ops.c. */
#ifndef UNETLAB_TENSOR_H
#define UNETLAB_TENSOR_H
#include <stdint.h>

#define TENSOR_MAX_DIMS 4

typedef struct {
    float *d;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
} Tensor;

/* New zero-filled tensor (die()s when out of memory); free with tensor_free. */
Tensor tensor_new(int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
Tensor tensor_like(const Tensor *t);
Tensor tensor_copy(const Tensor *t);
void tensor_free(Tensor *t);
int64_t tensor_numel(const Tensor *t);
/* "[2, 4, 32, 32]" into buf. */
const char *tensor_shape_str(const Tensor *t, char *buf, int size);

#endif
