/* attn_select: which attention path runs each attention shape of the CUDA
 * engine, decided once per shape (dtype, B, Nq, Nk, heads, dh, the four row
 * strides and the pointers' alignment) at its first use, then cached. The
 * paths, in the order auto mode prefers them (the table in attn_select.cu):
 * cuDNN's fused attention (kernels/cudnn/sdpa.h), our mma.sync kernel
 * (attn_mma.h), our wmma flash kernel, our plain kernel (cuda_ops.h).
 * UNETLAB_ATTN, read when a shape is
 * first seen:
 *   unset, "" or "auto": the first path that takes the shape and matches a
 *     float64 host reference on seeded random inputs of exactly that shape,
 *     strides and alignment (attn_select_check); plain is the last resort and
 *     is kept even if it fails (with a warning). A rejected path that could
 *     have taken the shape prints one line on stderr ("attention: cudnn
 *     rejected for B2 Nq4096 Nk4096 h10 d64 fp16: <reason>; using flash");
 *   "cudnn", "mma", "flash", "plain" (any name in the table): that path only, no
 *     check; a shape it cannot take stops the program with the shape and the
 *     reason;
 *   anything else stops the program naming the variable and the values.
 * UNETLAB_LIB_LOG=1 adds one line per shape on stderr and a summary at free.
 * Tested by tests/test_cuda_attn.c (skipped without a GPU). */
#ifndef UNETLAB_ATTN_SELECT_H
#define UNETLAB_ATTN_SELECT_H
#include "dtype.h"
#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

typedef struct AttnSelect AttnSelect;

/* The attention shape, cuk_attention's arguments less the pointers (see cuda_ops.h). */
typedef struct {
    DType dt;
    int64_t B, Nq, Nk;
    int heads, dh;
    int64_t ldq, ldk, ldv, ldo; /* row strides, elements */
} AttnShape;

/* A selector launching on stream s (the engine's); makes no CUDA or cuDNN
 * call until a shape is seen. Never fails. */
AttnSelect *attn_select_new(cudaStream_t s);
/* Synchronizes s and frees the selector and its cuDNN plans. NULL is a no-op. */
void attn_select_free(AttnSelect *a);

/* cuk_attention's contract on stream s, through the path chosen for the
 * shape (choosing it now if the shape is new: outside stream capture only,
 * unless the path is forced by UNETLAB_ATTN to one of our kernels). Nk 0 runs
 * the plain kernel (zeros), B, Nq, heads or dh 0 nothing. */
void attn_select_run(AttnSelect *a, const void *q, int64_t ldq, const void *k, int64_t ldk, const void *v, int64_t ldv,
                     void *o, int64_t ldo, DType dt, int64_t B, int64_t Nq, int64_t Nk, int heads, int dh);
/* The index (see attn_path_name) of the path chosen for this shape at these
 * pointers' alignment, choosing it now (and checking candidates, in auto
 * mode) if the shape is new. The pointers are read for their alignment only. */
int attn_select_choose(AttnSelect *a, const AttnShape *sh, const void *q, const void *k, const void *v, const void *o);
/* A short summary of the choices so far, e.g. "attention: 4 shapes: cudnn 4"
 * or "attention: 6 shapes: cudnn 4, flash 2" (owned by a, valid until the
 * next call on a). */
const char *attn_select_describe(AttnSelect *a);
/* Bytes of device workspace the cuDNN plans hold (0 before any). */
size_t attn_select_workspace_bytes(const AttnSelect *a);

/* UNETLAB_ATTN parsed: NULL for auto (unset, empty or "auto"), else the
 * table's name of the forced path. Any other value stops the program with a
 * message naming the variable and the accepted values. Reads the environment
 * at every call (cheap); cuk_attention uses it too. */
const char *attn_select_forced(void);

/* The paths: attn_path_count() of them, 0 .. count-1 in auto's order of
 * preference; the last is the plain kernel, which takes every shape. */
int attn_path_count(void);
const char *attn_path_name(int path);
/* The index of a path name, -1 if there is none. */
int attn_path_index(const char *name);

/* Launches path on stream s for this shape without any choosing or checking
 * (cuDNN: planned first if new, which is not allowed during capture).
 * Returns 0 when it launched, -1 and launches nothing when the path does not
 * take the shape, with the reason in why. */
int attn_select_launch(AttnSelect *a, int path, const AttnShape *sh, const void *q, const void *k, const void *v,
                       void *o, char *why, size_t whylen);

/* Element bounds of the check, as tests/test_cuda_ops.c's attention cases:
 * |got - ref| <= atol * max|ref| + rtol * |ref| per element, and
 * sum (got - ref)^2 / sum ref^2 <= nmse. */
void attn_check_tolerance(DType dt, double *atol, double *rtol, double *nmse);

typedef struct {
    double max_err;   /* max |got - ref| over the sampled outputs */
    double max_ref;   /* max |ref| there */
    double worst;     /* max |got - ref| / (atol * max_ref + rtol * |ref|): <= 1 passes */
    double nmse;
    int rows;         /* query rows compared (every head of each) */
    int finite;       /* every output element written and finite (the output starts as NaN) */
    int pad_ok;       /* the columns between heads * dh and ldo left untouched */
    int graph_ok;     /* captured into a CUDA graph, the replay passed too */
    char graph_note[200]; /* why not, when not */
    int pass;         /* all of the above within attn_check_tolerance */
} AttnCheck;

/* Auto mode's check of one path: seeded random Q, K, V (normal, std 1, so
 * logits are O(1..4)) of exactly this shape and these strides, on scratch
 * buffers whose addresses have the low 8 bits of like_q .. like_o (the same
 * alignment), the output started as NaN; then up to 16 query rows spread
 * over the batch (every head of each, all keys) against a float64 host
 * reference on the same rounded inputs. Then once more captured into a CUDA
 * graph (relaxed mode, as the engine captures) and replayed, checked alike:
 * a path that cannot be captured must lose here, not in the middle of the
 * engine's capture. Synchronizes s; not during capture.
 * Returns 0 when the path ran (r filled; r->pass says whether it matched),
 * -1 when it does not take the shape (why). */
int attn_select_check(AttnSelect *a, int path, const AttnShape *sh, const void *like_q, const void *like_k,
                      const void *like_v, const void *like_o, AttnCheck *r, char *why, size_t whylen);

/* "B2 Nq4096 Nk77 h10 d64 fp16" into buf. */
void attn_shape_str(const AttnShape *sh, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
