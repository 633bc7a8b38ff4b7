/* prof: see prof.h. */
#include "prof.h"
#include "err.h"
#include "rng.h"
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <time.h>

void prof_init(Prof *p, int repeats) {
    memset(p, 0, sizeof *p);
    p->repeats = repeats;
    p->nslot = 4096;
    p->slot = xmalloc((size_t)p->nslot * sizeof *p->slot);
    for (int i = 0; i < p->nslot; i++) p->slot[i] = -1;
}

void prof_free(Prof *p) {
    for (int i = 0; i < p->n; i++) { free(p->e[i].name); free(p->e[i].ms); }
    free(p->e);
    free(p->slot);
    memset(p, 0, sizeof *p);
}

double prof_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static int find_slot(const Prof *p, const char *name) {
    uint64_t h = rng_hash(name);
    for (int k = 0;; k++) {
        int s = (int)((h + (uint64_t)k) % (uint64_t)p->nslot);
        if (p->slot[s] < 0 || !strcmp(p->e[p->slot[s]].name, name)) return s;
    }
}

void prof_add(Prof *p, const char *name, double ms) {
    int s = find_slot(p, name);
    if (p->slot[s] < 0) {
        if (2 * (p->n + 1) > p->nslot) { /* grow and rehash */
            free(p->slot);
            p->nslot *= 2;
            p->slot = xmalloc((size_t)p->nslot * sizeof *p->slot);
            for (int i = 0; i < p->nslot; i++) p->slot[i] = -1;
            for (int i = 0; i < p->n; i++) p->slot[find_slot(p, p->e[i].name)] = i;
            s = find_slot(p, name);
        }
        if (p->n == p->cap) p->e = xrealloc(p->e, (size_t)(p->cap = p->cap ? 2 * p->cap : 512) * sizeof *p->e);
        p->e[p->n] = (ProfEntry){xstrdup(name), xcalloc((size_t)p->repeats, sizeof(double)), 0};
        p->slot[s] = p->n++;
    }
    ProfEntry *e = &p->e[p->slot[s]];
    if (p->cur >= 0 && p->cur < p->repeats) e->ms[p->cur] += ms;
    e->calls++;
}

void prof_set_calls(Prof *p, const char *name, int64_t calls) {
    int s = find_slot(p, name);
    if (p->n && p->slot[s] >= 0) p->e[p->slot[s]].calls = calls;
}

const ProfEntry *prof_find(const Prof *p, const char *name) {
    if (!p->n) return NULL;
    int s = find_slot(p, name);
    return p->slot[s] < 0 ? NULL : &p->e[p->slot[s]];
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double prof_quantile(const double *x, int n, double q) {
    if (n <= 0) return 0;
    double *s = xmalloc((size_t)n * sizeof *s);
    memcpy(s, x, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_d);
    double pos = q * (n - 1), v = s[(int)pos];
    if ((int)pos + 1 < n) v += (pos - (int)pos) * (s[(int)pos + 1] - s[(int)pos]);
    free(s);
    return v;
}

void prof_stats(const ProfEntry *e, int repeats, double *median, double *p10, double *p90) {
    *median = prof_quantile(e->ms, repeats, 0.5);
    *p10 = prof_quantile(e->ms, repeats, 0.1);
    *p90 = prof_quantile(e->ms, repeats, 0.9);
}

double prof_predict(const Prof *p, const ModuleTree *tt, const char *removed) {
    const ProfEntry *fw = prof_find(p, PROF_FORWARD);
    if (!fw) return NAN;
    double *pred = xmalloc((size_t)p->repeats * sizeof *pred);
    memcpy(pred, fw->ms, (size_t)p->repeats * sizeof *pred);
    for (int i = 0; i < tt->n_modules; i++) {
        if (!removed[i]) continue;
        const ProfEntry *e = prof_find(p, tt->m[i].name);
        if (!e) continue;
        int covered = 0; /* an ancestor already counted holds this one's time */
        for (int a = tt->m[i].parent; a >= 0 && !covered; a = tt->m[a].parent)
            covered = removed[a] && prof_find(p, tt->m[a].name);
        if (covered) continue;
        for (int r = 0; r < p->repeats; r++) pred[r] -= e->ms[r];
    }
    double m = prof_quantile(pred, p->repeats, 0.5);
    free(pred);
    return m;
}

static void on_time(void *ctx, const char *module, double ms) { prof_add(ctx, module, ms); }

int prof_forward(const ProfSubject *s, int n, int warmup, int repeats, Prof *p, double *plain_ms) {
    Tensor y;
    int rc = 0;
    for (int i = 0; i < warmup && !rc; i++)
        for (int k = 0; k < n && !rc; k++)
            if (!(rc = unet_forward(s[k].arch, s[k].w, s[k].in, &y, NULL, NULL))) tensor_free(&y);
    /* within each repeat every subject runs traced, then every subject untraced:
     * a slow moment of the machine hits the models, and the traced and untraced
     * forwards, alike (run in two phases, a slow second half read as overhead) */
    for (int r = 0; r < repeats && !rc; r++)
        for (int traced = 1; traced >= 0 && !rc; traced--)
            for (int k = 0; k < n && !rc; k++) {
                UnetTimer timer = {on_time, &p[k], NULL};
                p[k].cur = traced ? r : -1;
                double t0 = prof_now();
                rc = unet_forward_from(s[k].arch, s[k].w, s[k].in, NULL, &y, NULL, NULL, NULL, traced ? &timer : NULL);
                double ms = prof_now() - t0;
                p[k].cur = r;
                prof_add(&p[k], traced ? PROF_FORWARD : PROF_PLAIN, ms);
                p[k].cur = -1;
                if (!rc) tensor_free(&y);
            }
    for (int k = 0; k < n && !rc; k++) plain_ms[k] = prof_median(&p[k], PROF_PLAIN);
    return rc;
}

double prof_median(const Prof *p, const char *name) {
    const ProfEntry *e = prof_find(p, name);
    return e ? prof_quantile(e->ms, p->repeats, 0.5) : NAN;
}

void prof_kernels_free(ProfKernels *k) {
    for (int i = 0; i < k->n; i++) {
        free(k->k[i].name);
        free(k->k[i].module);
    }
    free(k->k);
    memset(k, 0, sizeof *k);
}
