/* testst: what the tests that build safetensors files share: every tensor of
 * a file as float32 StOut rows, ready to be changed and written again with
 * st_write. Failing to open the file is a CHECK failure naming it. */
#ifndef UNETLAB_TESTST_H
#define UNETLAB_TESTST_H
#include "err.h"
#include "safetensors.h"
#include <stdlib.h>
#include <string.h>

/* Every tensor of a safetensors file as float32 StOut rows (names and data owned). */
typedef struct {
    int n;
    StOut *t;
} Tensors;

static Tensors load_all(const char *path) {
    SafeTensors st;
    Tensors r = {0};
    int rc = st_open(&st, path, ERR_INPUT);
    CHECK_MSG(rc == 0, "%s", err_msg());
    if (rc) return r;
    r.n = st.n;
    r.t = calloc((size_t)st.n, sizeof *r.t);
    for (int i = 0; i < st.n; i++) {
        const StTensor *x = &st.t[i];
        float *d = malloc((size_t)(x->numel ? x->numel : 1) * sizeof(float));
        st_to_f32(x, d);
        r.t[i] = (StOut){strdup(x->name), x->ndim, {0}, d, x->dtype};
        for (int k = 0; k < x->ndim; k++) r.t[i].shape[k] = x->shape[k];
    }
    st_close(&st);
    return r;
}

static void free_all(Tensors *t) {
    for (int i = 0; i < t->n; i++) {
        free((char *)t->t[i].name);
        free((float *)t->t[i].data);
    }
    free(t->t);
    memset(t, 0, sizeof *t);
}

#endif
