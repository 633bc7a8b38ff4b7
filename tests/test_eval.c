/* test_eval: `unetlab eval` end to end, through the built binary ($UNETLAB,
 * default build/unetlab). It reproduces the fixtures' expected.json (made by
 * diffusers) for every student, skips what the DB already holds, survives
 * SIGKILL at random moments (nothing lost, nothing duplicated), shares one DB
 * between 4 concurrent workers (each student done once), and N merged shards
 * equal one run. */
#include "test.h"
#include "testcli.h"
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>




static cJSON *load_json(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    cJSON *j = cJSON_ParseWithLength(buf, n);
    free(buf);
    return j;
}

/* Every student of expected.json through `unetlab eval --format json`. */
static void expected(const char *fx) {
    cJSON *exp = load_json(fmt("tests/fixtures/%s/expected.json", fx));
    CHECK(exp != NULL);
    if (!exp) return;
    const cJSON *st;
    cJSON_ArrayForEach(st, cJSON_GetObjectItem(exp, "students")) {
        char drop[4096] = "";
        const cJSON *d;
        cJSON_ArrayForEach(d, cJSON_GetObjectItem(st, "drop")) {
            if (drop[0]) strcat(drop, ",");
            strncat(drop, d->valuestring, sizeof drop - strlen(drop) - 2);
        }
        const char *cmd = fmt("%s eval --model tests/fixtures/%s --calib tests/fixtures/%s/io.safetensors --drop %s --db %s/fx.db --format json 2>/dev/null",
                              BIN, fx, fx, drop, T);
        char *out;
        int rc = run(cmd, &out);
        CHECK_MSG(rc == 0, "%s: exit %d", cmd, rc);
        cJSON *got = cJSON_Parse(out);
        const cJSON *s0 = got ? cJSON_GetArrayItem(cJSON_GetObjectItem(got, "students"), 0) : NULL;
        CHECK_MSG(s0 != NULL, "%s %s: no student in the output", fx, st->string);
        if (s0) {
            CHECK_EQ_LL(cJSON_GetObjectItem(s0, "total_params")->valuedouble, cJSON_GetObjectItem(st, "total_params")->valuedouble);
            const cJSON *mse = cJSON_GetObjectItem(s0, "mse"), *pt;
            int n = 0;
            double worst = 0;
            cJSON_ArrayForEach(pt, cJSON_GetObjectItem(st, "mse")) {
                const cJSON *g = cJSON_GetObjectItem(mse, pt->string);
                CHECK_MSG(g != NULL, "%s %s: no point %s", fx, st->string, pt->string);
                if (!g) continue;
                double want = pt->valuedouble, have = g->valuedouble;
                int ok = want == 0 ? fabs(have) <= 1e-9 : fabs(have - want) <= 1e-4 * fabs(want);
                CHECK_MSG(ok, "%s %s %s: MSE %.10g, expected %.10g", fx, st->string, pt->string, have, want);
                if (want) worst = fmax(worst, fabs(have - want) / fabs(want));
                n++;
            }
            CHECK(cJSON_GetObjectItem(s0, "nmse") && cJSON_GetObjectItem(s0, "cosine"));
            fprintf(stderr, "eval %s %s: %d points, worst relative MSE error %.2e\n", fx, st->string, n, worst);
        }
        /* the same command again: nothing computed, the same answer */
        char *again;
        CHECK(run(fmt("%s", cmd), &again) == 0);
        CHECK_MSG(!strcmp(out, again), "%s %s: a rerun printed something else", fx, st->string);
        free(again);
        cJSON_Delete(got);
        free(out);
    }
    char *n;
    run(fmt("%s db query --db %s/fx.db --format csv 'SELECT count(*) FROM runs' ", BIN, T), &n);
    char *s;
    run(fmt("%s db query --db %s/fx.db --format csv \"SELECT count(*) FROM eval_jobs WHERE status = 'done'\"", BIN, T), &s);
    fprintf(stderr, "eval %s: runs %s", fx, strchr(n, '\n') ? strchr(n, '\n') + 1 : n);
    free(n);
    free(s);
    cJSON_Delete(exp);
}

#define WORK "--model tests/fixtures/mini-ssd --calib tests/fixtures/mini-ssd/io.safetensors --candidates transformer_layer"
#define DUMP "SELECT p.plan_json, r.point, r.sample, r.metric, r.value FROM eval_results r JOIN eval_jobs j ON j.id = r.job_id JOIN plans p ON p.id = j.plan_id ORDER BY 1, 2, 3, 4"

static char *dump(const char *db) {
    char *out = NULL;
    int rc = run(fmt("%s db query --db %s --format csv '%s'", BIN, db, DUMP), &out);
    CHECK_MSG(rc == 0, "db query on %s: exit %d", db, rc);
    return out;
}

static pid_t spawn(const char *cmd) {
    pid_t p = fork();
    if (p == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return p;
}

int main(void) {
    cli_setup("eval");
    srand((unsigned)time(NULL) ^ (unsigned)getpid());

    expected("mini-public");
    expected("mini-ssd");

    /* one clean run: the reference for the rest */
    char *clean_json;
    CHECK(run(fmt("%s eval " WORK " --db %s/clean.db --format json 2>/dev/null", BIN, T), &clean_json) == 0);
    char *clean = dump(fmt("%s/clean.db", T));
    int jobs = db_count(fmt("%s/clean.db", T), "SELECT count(*) FROM eval_jobs WHERE status = 'done'");
    int rows = db_count(fmt("%s/clean.db", T), "SELECT count(*) FROM eval_results");
    CHECK_MSG(jobs >= 20 && rows > jobs * 100, "clean run: %d jobs, %d rows", jobs, rows);

    /* SIGKILL at random moments, then the same command to the end */
    for (int round = 0; round < 3; round++) {
        int ms = 150 + rand() % 900;
        pid_t p = spawn(fmt("exec %s eval " WORK " --db %s/kill.db >/dev/null 2>&1", BIN, T));
        usleep((useconds_t)ms * 1000);
        kill(p, SIGKILL);
        int st;
        waitpid(p, &st, 0);
        int done = db_count(fmt("%s/kill.db", T), "SELECT count(*) FROM eval_jobs WHERE status = 'done'");
        fprintf(stderr, "kill round %d: SIGKILL after %d ms, %d of %d students stored\n", round, ms, done, jobs);
    }
    char *kill_json;
    CHECK(run(fmt("%s eval " WORK " --db %s/kill.db --format json 2>/dev/null", BIN, T), &kill_json) == 0);
    CHECK_MSG(!strcmp(kill_json, clean_json), "killed-and-resumed run reports differently from a clean one");
    char *killed = dump(fmt("%s/kill.db", T));
    CHECK_MSG(!strcmp(killed, clean), "killed-and-resumed DB holds other results than a clean run");
    CHECK_EQ_LL(db_count(fmt("%s/kill.db", T), "SELECT count(*) FROM eval_results"), rows);
    free(kill_json);
    free(killed);

    /* 4 workers on one DB: every student once */
    pid_t w[4];
    /* one OpenMP thread each: four processes of spinning thread pools on two cores crawl */
    for (int i = 0; i < 4; i++) w[i] = spawn(fmt("OMP_NUM_THREADS=1 exec %s eval " WORK " --db %s/shared.db > %s/w%d.out 2> %s/w%d.err", BIN, T, T, i, T, i));
    int total = 0;
    for (int i = 0; i < 4; i++) {
        int st;
        waitpid(w[i], &st, 0);
        CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker %d failed", i);
        char *err;
        run(fmt("grep -o 'computed [0-9]* students' %s/w%d.err | grep -o '[0-9]*'", T, i), &err);
        fprintf(stderr, "worker %d computed %d students\n", i, atoi(err));
        total += atoi(err);
        free(err);
    }
    CHECK_MSG(total == jobs, "4 workers computed %d students in all, there are %d", total, jobs);
    char *shared = dump(fmt("%s/shared.db", T));
    CHECK_MSG(!strcmp(shared, clean), "4-worker DB holds other results than a clean run");
    free(shared);

    /* shards on "different machines", merged */
    CHECK(run(fmt("%s eval " WORK " --shard 0/3 --db %s/s0.db >/dev/null 2>&1", BIN, T), NULL) == 0);
    CHECK(run(fmt("%s eval " WORK " --shard 1/3 --db %s/s1.db >/dev/null 2>&1", BIN, T), NULL) == 0);
    CHECK(run(fmt("%s eval " WORK " --shard 2/3 --db %s/s2.db >/dev/null 2>&1", BIN, T), NULL) == 0);
    CHECK(run(fmt("%s db merge %s/s0.db %s/s1.db %s/s2.db -o %s/merged.db 2>/dev/null", BIN, T, T, T, T), NULL) == 0);
    char *merged = dump(fmt("%s/merged.db", T));
    CHECK_MSG(!strcmp(merged, clean), "3 merged shards hold other results than one run");
    CHECK(run(fmt("%s db merge %s/s1.db -o %s/merged.db 2>/dev/null", BIN, T, T), NULL) == 0);
    char *merged2 = dump(fmt("%s/merged.db", T));
    CHECK_MSG(!strcmp(merged2, clean), "merging a shard twice changed the results");
    char *mj;
    CHECK(run(fmt("%s eval " WORK " --db %s/merged.db --format json 2>/dev/null", BIN, T), &mj) == 0);
    CHECK_MSG(!strcmp(mj, clean_json), "eval on the merged DB reports differently");
    free(mj);
    free(merged);
    free(merged2);
    free(clean);
    free(clean_json);
    cli_cleanup();
    TEST_MAIN_END("test_eval");
}
