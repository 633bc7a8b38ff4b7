/* test_profile: `unetlab profile` on the CPU, through the binary ($UNETLAB).
 * Per-module rows labelled engine cpu; the top-level modules add up to the
 * forward (gap within 3%); each block at least as long as its resnets and
 * attentions together; JSON and CSV parse; the DB gets the rows; a student's
 * prediction and measurement are both reported; a millisecond-scored schedule
 * runs on these numbers. */
#include "test.h"
#include "testcli.h"
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>




static double ms_of(const cJSON *mods, const char *name) {
    const cJSON *m;
    cJSON_ArrayForEach(m, mods) if (!strcmp(cJSON_GetObjectItem(m, "name")->valuestring, name)) return cJSON_GetObjectItem(m, "ms")->valuedouble;
    return -1;
}

int main(void) {
    cli_setup("profile");
    const char *M = "--model tests/fixtures/mini-public --height 128 --width 128 --tokens 8 --repeats 3 --warmup 1";

    char *js;
    CHECK(run(fmt("%s profile %s --db %s/p.db --format json 2>/dev/null", BIN, M, T), &js) == 0);
    cJSON *o = cJSON_Parse(js);
    CHECK_MSG(o != NULL, "profile --format json does not parse");
    const cJSON *p0 = o ? cJSON_GetArrayItem(cJSON_GetObjectItem(o, "profiles"), 0) : NULL;
    CHECK(p0 != NULL);
    if (p0) {
        CHECK(!strcmp(cJSON_GetObjectItem(p0, "engine")->valuestring, "cpu"));
        const cJSON *mods = cJSON_GetObjectItem(p0, "modules");
        double fw = cJSON_GetObjectItem(p0, "forward_ms")->valuedouble, att = cJSON_GetObjectItem(p0, "attributed_ms")->valuedouble;
        CHECK_MSG(fw > 0 && fabs(fw - att) <= 0.03 * fw, "forward %.3f ms, top-level modules %.3f ms", fw, att);
        CHECK(cJSON_GetArraySize(mods) > 100);
        /* a block holds its resnets and attentions: checked per repeat on the raw samples the
         * DB keeps (their intervals lie inside the block's), not on medians, which need not add */
        const char *blocks[] = {"down_blocks.1", "mid_block", "up_blocks.1"};
        for (int b = 0; b < 3; b++) {
            char *rows = NULL;
            CHECK(run(fmt("%s db query --db %s/p.db --format json \"SELECT module, samples FROM latency WHERE module = '%s'"
                          " OR module GLOB '%s.resnets.[0-9]' OR module GLOB '%s.attentions.[0-9]'\"",
                          BIN, T, blocks[b], blocks[b], blocks[b]), &rows) == 0);
            cJSON *arr = cJSON_Parse(rows);
            double whole[16] = {0}, parts[16] = {0};
            int nparts = 0, nr = 0;
            const cJSON *r;
            cJSON_ArrayForEach(r, arr) {
                cJSON *smp = cJSON_Parse(cJSON_GetObjectItem(r, "samples")->valuestring);
                int is_whole = !strcmp(cJSON_GetObjectItem(r, "module")->valuestring, blocks[b]);
                nr = cJSON_GetArraySize(smp) < 16 ? cJSON_GetArraySize(smp) : 16;
                for (int k = 0; k < nr; k++) (is_whole ? whole : parts)[k] += cJSON_GetArrayItem(smp, k)->valuedouble;
                nparts += !is_whole;
                cJSON_Delete(smp);
            }
            int ok = nparts >= 2 && nr > 0;
            for (int k = 0; k < nr; k++) ok &= whole[k] > 0 && parts[k] > 0 && parts[k] <= whole[k] + 1e-3;
            CHECK_MSG(ok, "%s: %d parts; repeat 0: block %.4f ms, its resnets and attentions %.4f ms", blocks[b], nparts, whole[0], parts[0]);
            cJSON_Delete(arr);
            free(rows);
        }
        CHECK(ms_of(mods, "down_blocks.1.attentions.0.transformer_blocks.1") > 0);
        CHECK(ms_of(mods, "down_blocks.1.attentions.0.transformer_blocks.1.attn1.to_q") > 0);
    }
    cJSON_Delete(o);
    free(js);

    char *csv;
    CHECK(run(fmt("%s profile %s --format csv 2>/dev/null", BIN, M), &csv) == 0);
    int lines = 0, bad = 0;
    for (char *l = strtok(csv, "\n"); l; l = strtok(NULL, "\n"), lines++) {
        int commas = 0;
        for (char *c = l; *c; c++) commas += *c == ',';
        bad += commas != 11;
    }
    CHECK_MSG(lines > 100 && bad == 0, "csv: %d lines, %d malformed", lines, bad);
    free(csv);

    char *rows;
    CHECK(run(fmt("%s db query --db %s/p.db --format csv \"SELECT count(*), sum(engine = 'cpu'), sum(module = '(forward)') FROM latency\"", BIN, T), &rows) == 0);
    int n = 0, cpu = 0, fwd = 0;
    sscanf(strchr(rows, '\n') ? strchr(rows, '\n') + 1 : "", "%d,%d,%d", &n, &cpu, &fwd);
    CHECK_MSG(n > 100 && cpu == n && fwd == 1, "latency rows: %d, cpu %d, forward %d", n, cpu, fwd);
    free(rows);

    char *txt;
    CHECK(run(fmt("%s profile %s --drop mid_block.attentions.0.transformer_blocks.0,up_blocks.0.attentions.0.transformer_blocks.1 2>/dev/null", BIN, M), &txt) == 0);
    CHECK_MSG(strstr(txt, "student: measured") && strstr(txt, "predicted"), "no student line:\n%s", txt);
    free(txt);
    CHECK(run(fmt("%s profile --compare tests/fixtures/mini-public,tests/fixtures/mini-ssd --height 128 --width 128 --tokens 8 --repeats 2 2>/dev/null | grep -c ' x[0-9][.][0-9]* of '", BIN), &txt) == 0);
    CHECK(atoi(txt) == 2);
    free(txt);

    char *sj;
    CHECK(run(fmt("%s schedule --model tests/fixtures/mini-public --db %s/s.db --stages 2 --score loss-per-ms --synthetic 1 --latent 8 --tokens 4 --repeats 2 --format json 2>/dev/null", BIN, T), &sj) == 0);
    cJSON *so = cJSON_Parse(sj);
    const cJSON *stg = so ? cJSON_GetObjectItem(so, "stages") : NULL;
    CHECK_MSG(stg && cJSON_GetArraySize(stg) == 2 && cJSON_GetObjectItem(cJSON_GetArrayItem(stg, 0), "ms"), "schedule by ms: %s", sj);
    cJSON_Delete(so);
    free(sj);
    cli_cleanup();
    TEST_MAIN_END("test_profile");
}
