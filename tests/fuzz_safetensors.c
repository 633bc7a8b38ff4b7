/* fuzz_safetensors: libFuzzer target for st_parse. Each input is treated as a
 * whole safetensors file in a buffer of exactly its size (so ASan reports any
 * read past the end); every tensor that parses is converted with st_to_f32.
 * Errors are expected; crashes, overreads and leaks are bugs. Build and run:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icore core/err.c \
 *     core/safetensors.c tests/fuzz_safetensors.c -lcjson -o fuzz_st && ./fuzz_st corpus/ */
#include "err.h"
#include "safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    SafeTensors st;
    if (st_parse(&st, buf, size, "fuzz", ERR_MODEL) == 0) {
        for (int i = 0; i < st.n; i++) {
            const StTensor *t = &st.t[i];
            /* validated: numel * dtype_size == nbytes <= size */
            float *out = malloc((size_t)t->numel * sizeof *out + 1);
            if (out) st_to_f32(t, out);
            if (st_find(&st, t->name) != t) abort();
            free(out);
        }
        st_close(&st);
    } else if (st.n || st.t || st.path || strchr(err_msg(), '\n')) {
        abort(); /* a failed parse must leave *st empty and a one-line message */
    }
    free(buf);
    return 0;
}
