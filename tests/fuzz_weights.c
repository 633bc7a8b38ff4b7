/* fuzz_weights: libFuzzer target for the check of a checkpoint's weights
 * against the model its config describes (make fuzz): weights_match, as
 * weights_load runs it on every file. Any input is refused (ERR_MODEL, one
 * line) or matches every tensor the tiny model needs at its shape, and then
 * converts to float32 within the file. Seed: tests/fuzz-seeds/weights/. */
#include "fuzz_tiny.h"
#include "unet.h"
#include "weights.h"
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static ModuleTree tree;
    static int built;
    if (!built) {
        Shape s = {1, 4, 4, 2};
        unet_tree_build(&tree, tiny_arch(), &s);
        built = 1;
    }
    char *buf = fuzz_copy(data, size);
    SafeTensors st;
    int rc = st_parse(&st, buf, size, "fuzz.safetensors", ERR_MODEL);
    expect_error(rc, ERR_MODEL);
    if (!rc) {
        int n = tree.n_tensors, dt = -1;
        const StTensor **src = calloc((size_t)n, sizeof *src);
        const SafeTensors **from = calloc((size_t)n, sizeof *from);
        int64_t *numel = calloc((size_t)n, sizeof *numel);
        const char *files[] = {"dir/fuzz.safetensors"};
        rc = weights_match(&tree, &st, files, 1, NULL, NULL, "dir", NULL, src, from, numel, &dt);
        expect_error(rc, ERR_MODEL);
        for (int i = 0; !rc && i < n; i++) {
            if (!src[i] || src[i]->numel != numel[i]) abort();
            float *f = malloc((size_t)(numel[i] ? numel[i] : 1) * sizeof *f);
            st_to_f32(src[i], f);
            free(f);
        }
        free(src);
        free(from);
        free(numel);
        st_close(&st);
    }
    free(buf);
    return 0;
}
