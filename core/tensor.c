/* tensor: see tensor.h. */
#include "tensor.h"
#include "err.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Tensor tensor_new(int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    Tensor t = {0};
    int64_t d[4] = {d0, d1, d2, d3}, n = 1;
    t.ndim = ndim;
    for (int i = 0; i < ndim; i++) { t.shape[i] = d[i]; n *= d[i]; }
    t.d = xcalloc((size_t)n, sizeof(float));
    return t;
}

int64_t tensor_numel(const Tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

Tensor tensor_like(const Tensor *t) { return tensor_new(t->ndim, t->shape[0], t->shape[1], t->shape[2], t->shape[3]); }

Tensor tensor_copy(const Tensor *t) {
    Tensor c = tensor_like(t);
    memcpy(c.d, t->d, (size_t)tensor_numel(t) * sizeof(float));
    return c;
}

void tensor_free(Tensor *t) {
    free(t->d);
    memset(t, 0, sizeof *t);
}

const char *tensor_shape_str(const Tensor *t, char *buf, int size) {
    int n = snprintf(buf, (size_t)size, "[");
    for (int i = 0; i < t->ndim && n < size; i++)
        n += snprintf(buf + n, (size_t)(size - n), "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (n < size) snprintf(buf + n, (size_t)(size - n), "]");
    return buf;
}
