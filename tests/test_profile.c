/* test_profile: `unetlab profile` on the CPU, through the binary ($UNETLAB).
 * Per-module rows labelled engine cpu; the top-level modules add up to the
 * forward (gap within 3%); each block at least as long as its resnets and
 * attentions together; JSON and CSV parse; the DB gets the rows, the untraced
 * forward among them; a student's prediction and measurement are both
 * reported; a millisecond-scored schedule runs on these numbers. Noise: while
 * the test keeps busy the one CPU it pins itself and its children to, bench,
 * profile and the schedule's teacher profile are marked unstable (JSON, DB),
 * the schedule refuses to score (exit 9) unless --allow-unstable and measures
 * a stored unstable profile again. A target nothing reaches exits 10. */
#include "test.h"
#include "testcli.h"
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* Pins this process (and so every command it runs) to the first CPU it may
 * use, and keeps that CPU busy with a child spinning there: others then take
 * about half of the only CPU a measurement may use, whatever the machine. */
static pid_t busy_start(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set)) return -1;
    int first = 0;
    while (first < CPU_SETSIZE && !CPU_ISSET(first, &set)) first++;
    CPU_ZERO(&set);
    CPU_SET(first, &set);
    if (sched_setaffinity(0, sizeof set, &set)) return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(600); /* never outlives a test that dies */
        for (volatile unsigned long i = 0;; i++) {}
    }
    return pid;
}

static void busy_stop(pid_t pid, const cpu_set_t *was) {
    if (pid > 0) { kill(pid, SIGKILL); waitpid(pid, NULL, 0); }
    sched_setaffinity(0, sizeof *was, was);
}

static const cJSON *item(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

/* grep -c PATTERN FILE == 1 */
static int once(const char *pattern, const char *file) {
    char *n = NULL;
    int ok = run(fmt("grep -c -- '%s' %s/%s", pattern, T, file), &n) == 0 && atoi(n) == 1;
    free(n);
    return ok;
}

static void noise(const char *M) {
    cpu_set_t was;
    CHECK(sched_getaffinity(0, sizeof was, &was) == 0);
    pid_t busy = busy_start();
    CHECK(busy > 0);
    char *js = NULL;
    CHECK(run(fmt("%s bench --model tests/fixtures/mini-public --height 128 --width 128 --tokens 8 --warmup 1 --repeats 10"
                  " --format json 2>%s/bench.err", BIN, T), &js) == 0);
    cJSON *b = cJSON_Parse(js), *b0 = cJSON_GetArrayItem(b, 0);
    CHECK_MSG(b0 && cJSON_IsTrue(item(b0, "unstable")) && item(b0, "others_load")->valuedouble > 0.2,
              "bench under load: %s", js);
    CHECK(once("^unetlab: warning: the bench of tests/fixtures/mini-public at batch 1 is unstable (other processes took",
               "bench.err"));
    cJSON_Delete(b);
    free(js);

    CHECK(run(fmt("%s profile %s --db %s/busy.db --format json 2>/dev/null", BIN, M, T), &js) == 0);
    cJSON *o = cJSON_Parse(js), *p0 = cJSON_GetArrayItem(item(o, "profiles"), 0);
    CHECK_MSG(p0 && cJSON_IsTrue(item(p0, "unstable")) && item(p0, "others_load")->valuedouble > 0.2,
              "profile under load: %s", js ? js : "");
    cJSON_Delete(o);
    free(js);
    CHECK(run(fmt("%s db query --db %s/busy.db --format csv \"SELECT count(*), sum(unstable), min(others_load) > 0.2"
                  " FROM latency\"", BIN, T), &js) == 0);
    int n = 0, u = 0, loaded = 0;
    sscanf(strchr(js, '\n') ? strchr(js, '\n') + 1 : "", "%d,%d,%d", &n, &u, &loaded);
    CHECK_MSG(n > 100 && u == n && loaded == 1, "latency rows %d, unstable %d, others' load > 0.2: %d", n, u, loaded);
    free(js);

    /* the schedule: an unstable teacher profile is stored as such and not scored with */
    const char *S = "schedule --model tests/fixtures/mini-public --stages 1 --score loss-per-ms --synthetic 1 --latent 8"
                    " --tokens 4 --repeats 3";
    CHECK(run(fmt("%s %s --db %s/su.db 2>%s/s1.err", BIN, S, T, T), NULL) == 9);
    CHECK(once("^unetlab: error: schedule: the teacher profile is unstable", "s1.err"));
    CHECK(run(fmt("%s db query --db %s/su.db --format csv \"SELECT json_extract(latency, '$.unstable'),"
                  " json_extract(latency, '$.others_load') > 0.2 FROM schedules\"", BIN, T), &js) == 0);
    CHECK_MSG(strstr(js, "\n1,1"), "stored profile: %s", js);
    free(js);
    /* told to, it scores with one; and a stored unstable profile is measured again */
    CHECK(run(fmt("%s %s --db %s/su.db --allow-unstable 2>%s/s2.err", BIN, S, T, T), NULL) == 0);
    CHECK(once("the stored teacher profile is marked unstable: measuring it again", "s2.err"));
    busy_stop(busy, &was);
}




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
        bad += commas != 13;
    }
    CHECK_MSG(lines > 100 && bad == 0, "csv: %d lines, %d malformed", lines, bad);
    free(csv);

    char *rows;
    CHECK(run(fmt("%s db query --db %s/p.db --format csv \"SELECT count(*), sum(engine = 'cpu'), sum(module = '(forward)'), sum(module = '(untraced)') FROM latency\"",
              BIN, T), &rows) == 0);
    int n = 0, cpu = 0, fwd = 0, plain = 0;
    sscanf(strchr(rows, '\n') ? strchr(rows, '\n') + 1 : "", "%d,%d,%d,%d", &n, &cpu, &fwd, &plain);
    CHECK_MSG(n > 100 && cpu == n && fwd == 1 && plain == 1, "latency rows: %d, cpu %d, forward %d, untraced %d", n, cpu,
              fwd, plain);
    free(rows);

    char *txt;
    CHECK(run(fmt("%s profile %s --drop mid_block.attentions.0.transformer_blocks.0,up_blocks.0.attentions.0.transformer_blocks.1 2>/dev/null", BIN, M), &txt) == 0);
    CHECK_MSG(strstr(txt, "student: measured") && strstr(txt, "predicted"), "no student line:\n%s", txt);
    free(txt);
    CHECK(run(fmt("%s profile --compare tests/fixtures/mini-public,tests/fixtures/mini-ssd --height 128 --width 128 --tokens 8 --repeats 2 2>/dev/null | grep -c ' x[0-9][.][0-9]* of '", BIN), &txt) == 0);
    CHECK(atoi(txt) == 2);
    free(txt);

    char *sj;
    CHECK(run(fmt("%s schedule --model tests/fixtures/mini-public --db %s/s.db --stages 2 --score loss-per-ms --synthetic 1 --latent 8 --tokens 4 --repeats 2 --allow-unstable --format json 2>/dev/null", BIN, T), &sj) == 0);
    cJSON *so = cJSON_Parse(sj);
    const cJSON *stg = so ? cJSON_GetObjectItem(so, "stages") : NULL;
    CHECK_MSG(stg && cJSON_GetArraySize(stg) == 2 && cJSON_GetObjectItem(cJSON_GetArrayItem(stg, 0), "ms"), "schedule by ms: %s", sj);
    cJSON_Delete(so);
    free(sj);

    /* a target no student reaches: every stage stored, the plan written, exit 10 */
    CHECK(run(fmt("%s schedule --model tests/fixtures/mini-public --db %s/t.db --target-params 1 --kinds mid_block_removal"
                  " --synthetic 1 --latent 8 --tokens 4 --plan-out %s/t.json >/dev/null 2>%s/t.err", BIN, T, T, T), NULL) == 10);
    CHECK(once("^unetlab: error: schedule: target 1 params not reached: nothing left to remove after stage 1; the"
               " smallest student has ", "t.err"));
    CHECK(access(fmt("%s/t.json", T), R_OK) == 0);
    CHECK(run(fmt("%s db query --db %s/t.db --format csv \"SELECT count(*) FROM schedule_stages\"", BIN, T), &sj) == 0);
    CHECK_MSG(strstr(sj, "\n1\n"), "stages: %s", sj);
    free(sj);

    noise(M);
    cli_cleanup();
    TEST_MAIN_END("test_profile");
}
