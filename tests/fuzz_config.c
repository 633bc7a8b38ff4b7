/* fuzz_config: libFuzzer target for the config.json reader (make fuzz).
 * Any input must give either an Arch or an ERR_MODEL with a one-line message;
 * the Arch must be one the module tree can be built from. */
#include "config.h"
#include "err.h"
#include "unet.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* config.c looks presets up in the generated tables; the fuzzer needs none. */
const char *const embedded_names[] = {NULL};
const char *const embedded_texts[] = {NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size ? size : 1); /* exactly size bytes, so ASan sees overreads */
    memcpy(buf, data, size);
    Arch a;
    int rc = config_parse(&a, buf, size, "fuzz.json");
    if (rc && (rc != ERR_MODEL || strchr(err_msg(), '\n'))) abort();
    if (!rc && a.n_blocks > 0 && a.n_blocks <= 4 && a.block_out[a.n_blocks - 1] <= 4096) {
        Shape s = {1, 8, 8, 4};
        ModuleTree t;
        unet_tree_build(&t, &a, &s);
        if (t.m[0].params <= 0) abort();
        unet_tree_free(&t);
    }
    free(buf);
    return 0;
}
