/* test_schedule: `unetlab schedule` and `unetlab export` end to end, through
 * the built binary ($UNETLAB). A schedule on mini-public to half its
 * parameters, killed twice midway (SIGKILL) and resumed, equals the
 * uninterrupted run stage for stage; the exported student loads and its
 * forward equals the forward with the plan, bit for bit, in fp16 and fp32. */
#include "test.h"
#include "testcli.h"
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>




static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define TARGET 3858466 /* half of mini-public's 7,716,932 */
#define SCHED "schedule --model tests/fixtures/mini-public --target-params 3858466 --synthetic 1 --latent 8 --tokens 4"
#define STAGES "SELECT stage, chosen, params, macs, loss FROM schedule_stages ORDER BY stage"

static char *stages(const char *db) {
    char *out = NULL;
    CHECK(run(fmt("%s db query --db %s --format csv '%s'", BIN, db, STAGES), &out) == 0);
    return out;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

int main(void) {
    cli_setup("schedule");

    /* uninterrupted */
    double t0 = now();
    CHECK(run(fmt("%s " SCHED " --db %s/a.db --plan-out %s/a.json 2>/dev/null", BIN, T, T), NULL) == 0);
    double full = now() - t0;
    char *a = stages(fmt("%s/a.db", T));
    int n_stages = count_lines(a) - 1;
    CHECK_MSG(n_stages >= 3, "only %d stages", n_stages);

    /* killed twice midway, then the same command to the end */
    double at[2] = {0.3 * full, 0.35 * full};
    for (int k = 0; k < 2; k++) {
        pid_t p = fork();
        if (p == 0) {
            execl("/bin/sh", "sh", "-c", fmt("exec %s " SCHED " --db %s/k.db >/dev/null 2>&1", BIN, T), (char *)NULL);
            _exit(127);
        }
        usleep((useconds_t)(at[k] * 1e6));
        kill(p, SIGKILL);
        int st;
        waitpid(p, &st, 0);
        char *s = stages(fmt("%s/k.db", T));
        int done = count_lines(s) - 1;
        fprintf(stderr, "kill %d after %.1f s: %d of %d stages stored\n", k + 1, at[k], done, n_stages);
        CHECK_MSG(WIFSIGNALED(st) && done < n_stages, "kill %d did not land midway (%d of %d stages)", k + 1, done, n_stages);
        free(s);
    }
    CHECK(run(fmt("%s " SCHED " --db %s/k.db --plan-out %s/k.json 2>/dev/null", BIN, T, T), NULL) == 0);
    char *k = stages(fmt("%s/k.db", T));
    CHECK_MSG(!strcmp(a, k), "resumed schedule differs:\n%s\nvs uninterrupted:\n%s", k, a);
    char *pa, *pk;
    run(fmt("cat %s/a.json", T), &pa);
    run(fmt("cat %s/k.json", T), &pk);
    CHECK_MSG(pa[0] && !strcmp(pa, pk), "final plans differ");
    /* the same command once more: nothing left to do, the same plan */
    char *again;
    CHECK(run(fmt("%s " SCHED " --db %s/k.db --format json 2>/dev/null", BIN, T), &again) == 0);
    cJSON *j = cJSON_Parse(again);
    CHECK(j && cJSON_GetArraySize(cJSON_GetObjectItem(j, "stages")) == n_stages);
    cJSON_Delete(j);
    free(again);

    /* export: the student loads and computes exactly what the plan computes */
    const char *io = "tests/fixtures/mini-public/io.safetensors";
    CHECK(run(fmt("%s forward --device cpu --model tests/fixtures/mini-public --plan %s/a.json --inputs %s --out %s/plan.st >/dev/null 2>&1",
                  BIN, T, io, T), NULL) == 0);
    const char *dts[] = {"fp16", "fp32"};
    for (int d = 0; d < 2; d++) {
        CHECK(run(fmt("%s export --model tests/fixtures/mini-public --plan %s/a.json --out %s/exp-%s --dtype %s >/dev/null 2>&1",
                      BIN, T, T, dts[d], dts[d]), NULL) == 0);
        CHECK(run(fmt("%s forward --device cpu --model %s/exp-%s --inputs %s --out %s/exp-%s.st >/dev/null 2>&1", BIN, T,
                      dts[d], io, T, dts[d]), NULL) == 0);
        CHECK_MSG(run(fmt("cmp -s %s/plan.st %s/exp-%s.st", T, T, dts[d]), NULL) == 0,
                  "export (%s) then forward differs from forward with the plan", dts[d]);
    }
    /* the config has what diffusers needs for the student, and builds its parameter count */
    char *cfg;
    run(fmt("cat %s/exp-fp16/config.json", T), &cfg);
    cJSON *c = cJSON_Parse(cfg);
    CHECK(c != NULL);
    const char *fields[] = {"_class_name", "down_block_types", "up_block_types", "mid_block_type", "layers_per_block",
                            "transformer_layers_per_block", "reverse_transformer_layers_per_block",
                            "block_out_channels", "attention_head_dim", "cross_attention_dim"};
    for (size_t i = 0; c && i < sizeof fields / sizeof *fields; i++)
        CHECK_MSG(cJSON_GetObjectItem(c, fields[i]) != NULL, "config.json lacks %s", fields[i]);
    cJSON_Delete(c);
    free(cfg);
    char *p1, *p2;
    run(fmt("%s inspect --model %s/exp-fp16 --format csv | grep '^(total)'", BIN, T), &p1);
    run(fmt("%s inspect --model tests/fixtures/mini-public --plan %s/a.json --format csv | grep '^(total)'", BIN, T), &p2);
    CHECK_MSG(p1[0] && !strcmp(p1, p2), "exported model counts %s, the plan %s", p1, p2);
    long params = atol(strchr(p1, ',') ? strchr(strchr(p1, ',') + 1, ',') + 1 : "0");
    CHECK_MSG(params > 0 && params <= TARGET, "student has %ld params, target %d", params, TARGET);
    char *man;
    run(fmt("cat %s/exp-fp16/removal.json", T), &man);
    cJSON *mj = cJSON_Parse(man);
    CHECK(mj && cJSON_GetObjectItem(mj, "removed") && cJSON_GetObjectItem(mj, "renamed") &&
          cJSON_GetObjectItem(cJSON_GetObjectItem(mj, "teacher"), "weights_hash"));
    CHECK(mj && (long)cJSON_GetObjectItem(mj, "student_params")->valuedouble == params);
    cJSON_Delete(mj);
    free(man);
    free(p1);
    free(p2);
    free(a);
    free(k);
    free(pa);
    free(pk);
    cli_cleanup();
    TEST_MAIN_END("test_schedule");
}
