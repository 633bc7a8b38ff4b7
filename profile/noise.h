/* noise: whether a timing can be trusted on a shared machine. A measurement
 * brackets its timed forwards with noise_start / noise_stop, which read the
 * busy time of the CPUs this process may run on (/proc/stat: user, nice,
 * system, irq, softirq and steal, the last being other guests of a virtual
 * machine) and this process's own CPU time (getrusage): what the CPUs did
 * beyond our own work is other processes' load. With the spread of the
 * samples (p90/p10) it decides whether the numbers are `unstable`:
 *
 *   others' load above NOISE_MAX_OTHERS of the CPUs' time (and at least
 *   NOISE_MIN_OTHERS_MS of it, so that a short run's tick rounding cannot
 *   trip it), or p90/p10 above NOISE_MAX_SPREAD.
 *
 * Every timing command (bench, profile, profile --compare, the schedule's
 * teacher profile) records both numbers with its rows and says so in one
 * warning line when it is unstable. Tested by tests/test_profile.c (a
 * measurement taken while the test keeps a core busy is unstable). */
#ifndef UNETLAB_NOISE_H
#define UNETLAB_NOISE_H
#include <stdint.h>

#define NOISE_MAX_OTHERS 0.10
#define NOISE_MIN_OTHERS_MS 30.0
#define NOISE_MAX_SPREAD 1.5

typedef struct {
    double t0_ms, self0_ms;    /* wall clock and our CPU time at the start */
    uint64_t busy0;            /* busy ticks of our CPUs at the start */
    int ncpu;                  /* CPUs this process may run on (0: /proc/stat unreadable) */
} NoiseProbe;

typedef struct {
    double wall_ms;            /* the bracketed time */
    double others_ms;          /* CPU time others took on our CPUs meanwhile; NaN unknown */
    double others_load;        /* others_ms / (wall_ms x ncpu): 0 quiet, 1 every CPU busy with others; NaN unknown */
    double spread;             /* p90 / p10 of the samples judged */
    int unstable;
} Noise;

void noise_start(NoiseProbe *p);
/* Others' load since noise_start, judged with the spread of samples ms[0..n-1]
 * (more sample sets may be judged into the same Noise with noise_judge). */
Noise noise_stop(const NoiseProbe *p, const double *ms, int n);
/* Widens n->spread to these samples' p90/p10 and re-judges. */
void noise_judge(Noise *n, const double *ms, int count);

/* "other processes took 48% of the CPUs, p90/p10 1.62": why it is unstable. */
void noise_describe(const Noise *n, char *buf, int size);
/* One line on stderr when n is unstable: "unetlab: warning: WHAT is unstable
 * (...): rows marked unstable; for a clean measurement ...". */
void noise_warn(const Noise *n, const char *what);

#endif
