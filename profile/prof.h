/* prof: per-module wall-clock timing of the CPU forward. The forward wraps
 * every module it runs (blocks, resnets, attentions, transformer layers, and
 * each op inside: convolutions, linears, norms, the attention matmuls) in
 * prof_add calls under the module's diffusers name (the teacher's name in a
 * student), so a module's time is inclusive of its children. One sample per
 * module per repeat. These are CPU numbers, labelled 'cpu' wherever they are
 * stored or shown: the GPU path (CUPTI) is another engine. Tested by
 * tests/test_profile.c (the parts add up to the whole). */
#ifndef UNETLAB_PROF_H
#define UNETLAB_PROF_H
#include "forward.h"
#include "unet.h"
#include <stdint.h>

typedef struct {
    char *name;
    double *ms;      /* [repeats]: time in this module per repeat */
    int64_t calls;   /* calls over all repeats */
} ProfEntry;

typedef struct {
    int repeats, cur;          /* samples per entry; the repeat being recorded */
    ProfEntry *e;
    int n, cap;
    int *slot;                 /* open-addressing hash of names -> index in e */
    int nslot;
} Prof;

void prof_init(Prof *p, int repeats);
void prof_free(Prof *p);
double prof_now(void);                       /* milliseconds, monotonic */
void prof_add(Prof *p, const char *name, double ms);
const ProfEntry *prof_find(const Prof *p, const char *name);
/* Sets an entry's count (the GPU engines count kernels, not calls). */
void prof_set_calls(Prof *p, const char *name, int64_t calls);
/* Median, p10 and p90 of an entry's samples. */
void prof_stats(const ProfEntry *e, int repeats, double *median, double *p10, double *p90);
/* Quantile q of n samples (sorted copy, linear interpolation). */
double prof_quantile(const double *x, int n, double q);
/* Median of an entry's samples; NaN when p has no such entry. */
double prof_median(const Prof *p, const char *name);

/* The name the whole forward is recorded under. */
#define PROF_FORWARD "(forward)"
/* The same forwards without per-module timing: the latency a user gets. */
#define PROF_PLAIN "(untraced)"
/* cupti engine: the traced records' own durations summed (the GPU busy time). */
#define PROF_BUSY "(kernels busy)"

/* Predicted forward time (median over repeats) of a student whose removed
 * teacher modules are marked in removed[] (unet_removed over the teacher's
 * tree tt): the teacher's forward minus each top-most removed module's time. */
double prof_predict(const Prof *teacher, const ModuleTree *tt, const char *removed);

/* What one profiled forward runs: a model (or a student: the teacher's
 * weights), its weights and its inputs. */
typedef struct {
    const Arch *arch;
    const Weights *w;
    const UnetInputs *in;
} ProfSubject;

/* Profiles the forwards of s[0..n-1] (a teacher and its students, or the
 * models compared): `warmup` untimed rounds, then `repeats` rounds with
 * per-module timing into p[k] (p[k].repeats == repeats; the whole forward
 * under PROF_FORWARD), each followed by the same round without (under
 * PROF_PLAIN), whose medians are plain_ms[k]: the tracing overhead is the
 * difference. Within a round the subjects take turns (A, B, C traced, then A,
 * B, C untraced), so a slow moment of the machine hits them alike. */
int prof_forward(const ProfSubject *s, int n, int warmup, int repeats, Prof *p, double *plain_ms);

/* One CUPTI record of a profiled forward, for the store's per-kernel table. */
typedef struct {
    int model, repeat, seq;       /* which of a[], which timed forward, order in it */
    const char *kind;             /* "kernel", "memcpy", "memset" */
    char *name, *module;          /* module NULL when launched outside every module */
    int grid[3], block[3], registers, smem_static, smem_dynamic;
    uint64_t bytes, start_ns, duration_ns, graph_node; /* start_ns from the forward's first record */
    uint32_t stream;                                    /* CUPTI stream id */
} ProfKernel;
typedef struct {
    ProfKernel *k;
    int n;
} ProfKernels;
void prof_kernels_free(ProfKernels *k);

#ifdef UNETLAB_CUDA
struct CudaEngine;
/* prof_forward on the GPU (profile/prof_cuda.cu): a[0..n-1] on engine e, W
 * eager warm-ups, then R untraced forwards (plain_ms[k]: their median), then
 * R traced ones. use_cupti: kernel records attributed to modules (engine
 * "cupti"; with graph, one captured graph replayed R times), every record in
 * *kern; else, or when CUPTI cannot trace, an event pair around each module
 * of eager forwards (engine "cuda-events"). The whole forward (PROF_FORWARD)
 * and the untraced one (PROF_PLAIN) are timed with CUDA events either way.
 * Models run one after another here (each is traced on its own). *engine says which ran. In the cupti
 * engine a module's time is its records' share of the GPU timeline (the idle
 * gap before each record counts to it), its calls count kernels, and
 * PROF_BUSY holds the records' own durations summed. */
int prof_forward_cuda(struct CudaEngine *e, const Arch *const *a, int n, const UnetInputs *in, int warmup, int repeats,
                      int graph, int use_cupti, Prof *p, double *plain_ms, ProfKernels *kern, const char **engine);
#endif

#endif
