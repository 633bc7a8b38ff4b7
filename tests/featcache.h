/* featcache: the features of one forward kept by name (a FeatureFn and a
 * FeatureGet for prefix reuse), and the relative L2 error the fixture tests
 * judge by. Shared by tests/test_fixtures.c and tests/test_cuda_forward.c. */
#ifndef UNETLAB_FEATCACHE_H
#define UNETLAB_FEATCACHE_H
#include "tensor.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name[256];
    Tensor t[256];
    int n;
} Cache;

static void keep(void *p, const char *name, const Tensor *t) {
    Cache *c = p;
    if (c->n < 256) { c->name[c->n] = strdup(name); c->t[c->n++] = tensor_copy(t); }
}

static const Tensor *lookup(void *p, const char *name) {
    Cache *c = p;
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->name[i], name)) return &c->t[i];
    return NULL;
}

static void cache_free(Cache *c) {
    for (int i = 0; i < c->n; i++) { free(c->name[i]); tensor_free(&c->t[i]); }
    c->n = 0;
}

/* ||a - b|| / ||b|| over n values (||a - b|| where b is all zeros). */
static double rel_l2(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) { double d = (double)a[i] - b[i]; num += d * d; den += (double)b[i] * b[i]; }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
#endif
