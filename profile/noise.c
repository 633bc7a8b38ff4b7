/* noise: see noise.h. */
#include "noise.h"
#include "prof.h"
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Busy ticks (user, nice, system, irq, softirq, steal) summed over the CPUs
 * in our affinity mask; *ncpu counts them. 0 CPUs when /proc/stat cannot be read. */
static uint64_t busy_ticks(int *ncpu) {
    cpu_set_t set;
    int have_set = sched_getaffinity(0, sizeof set, &set) == 0;
    *ncpu = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0;
    char line[512];
    uint64_t busy = 0;
    while (fgets(line, sizeof line, f)) {
        int cpu;
        unsigned long long u, ni, sy, id, io, irq, sirq, st;
        if (strncmp(line, "cpu", 3) || line[3] < '0' || line[3] > '9') continue;
        if (sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &u, &ni, &sy, &id, &io, &irq, &sirq, &st) != 9)
            continue;
        if (have_set && (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &set))) continue;
        busy += u + ni + sy + irq + sirq + st;
        ++*ncpu;
    }
    fclose(f);
    return busy;
}

static double self_cpu_ms(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return NAN;
    return 1e3 * (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-3 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

void noise_start(NoiseProbe *p) {
    p->busy0 = busy_ticks(&p->ncpu);
    p->self0_ms = self_cpu_ms();
    p->t0_ms = prof_now();
}

static int judge(const Noise *n) {
    return (n->others_load > NOISE_MAX_OTHERS && n->others_ms >= NOISE_MIN_OTHERS_MS) || n->spread > NOISE_MAX_SPREAD;
}

void noise_judge(Noise *n, const double *ms, int count) {
    double p10 = prof_quantile(ms, count, 0.1), p90 = prof_quantile(ms, count, 0.9);
    double s = p10 > 0 ? p90 / p10 : 1.0;
    if (!(n->spread >= s)) n->spread = s;
    n->unstable = judge(n);
}

Noise noise_stop(const NoiseProbe *p, const double *ms, int count) {
    Noise n = {prof_now() - p->t0_ms, NAN, NAN, 0, 0};
    int ncpu;
    uint64_t busy = busy_ticks(&ncpu);
    double self = self_cpu_ms();
    if (p->ncpu > 0 && ncpu == p->ncpu && busy >= p->busy0 && !isnan(self) && n.wall_ms > 0) {
        double tick_ms = 1e3 / (double)sysconf(_SC_CLK_TCK);
        double others = (double)(busy - p->busy0) * tick_ms - (self - p->self0_ms);
        n.others_ms = others > 0 ? others : 0;
        n.others_load = n.others_ms / (n.wall_ms * ncpu);
    }
    noise_judge(&n, ms, count);
    return n;
}

void noise_describe(const Noise *n, char *buf, int size) {
    if (isnan(n->others_load)) snprintf(buf, (size_t)size, "others' CPU use unknown, p90/p10 %.2f", n->spread);
    else snprintf(buf, (size_t)size, "other processes took %.0f%% of the CPUs, p90/p10 %.2f", 100 * n->others_load, n->spread);
}

void noise_warn(const Noise *n, const char *what) {
    if (!n->unstable) return;
    char d[96];
    noise_describe(n, d, sizeof d);
    fprintf(stderr,
            "unetlab: warning: %s is unstable (%s; limits %.0f%% and %.2f): marked unstable; for a clean measurement rerun"
            " when nothing else runs on this machine (see top) or with more --repeats\n",
            what, d, 100 * NOISE_MAX_OTHERS, NOISE_MAX_SPREAD);
}
