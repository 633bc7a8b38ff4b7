/* fuzz_inputs: libFuzzer target for the inputs / calibration reader (make
 * fuzz): what `forward --inputs` and `eval --calib` read. Any input gives
 * inputs that pass the model's checks (shapes, finite values) or an error
 * (ERR_INPUT, one line). Seeds: tests/fuzz-seeds/inputs/. */
#include "fuzz_tiny.h"
#include "forward.h"
#include "safetensors.h"
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = fuzz_copy(data, size);
    SafeTensors st;
    int rc = st_parse(&st, buf, size, "fuzz.safetensors", ERR_INPUT);
    expect_error(rc, ERR_INPUT);
    if (!rc) {
        UnetInputs in;
        rc = unet_inputs_parse(&st, tiny_arch(), &in);
        expect_error(rc, ERR_INPUT);
        if (!rc) unet_inputs_free(&in);
        st_close(&st);
    }
    free(buf);
    return 0;
}
