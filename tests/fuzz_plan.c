/* fuzz_plan: libFuzzer target for the plan reader and the removal it applies
 * (make fuzz): any input gives a plan or ERR_PLAN with one line; a plan gives a
 * student or ERR_PLAN; a student's tree builds, and its diffusers config is
 * written or refused with ERR_PLAN. Seeds: tests/fuzz-seeds/plan/. */
#include "fuzz_tiny.h"
#include "plan.h"
#include "unet.h"
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = fuzz_copy(data, size);
    Plan p;
    int rc = plan_parse(&p, buf, size, "fuzz.json");
    expect_error(rc, ERR_PLAN);
    if (!rc) {
        Arch st;
        rc = plan_apply(tiny_arch(), &p, &st);
        expect_error(rc, ERR_PLAN);
        if (!rc) {
            Shape s = {1, 4, 4, 2};
            ModuleTree t;
            unet_tree_build(&t, &st, &s);
            if (t.m[0].params <= 0) abort();
            unet_tree_free(&t);
            char *cfg = NULL;
            expect_error(plan_config_json(&st, TINY_CONFIG, &cfg), ERR_PLAN);
            free(cfg);
        }
        plan_free(&p);
    }
    free(buf);
    return 0;
}
