/* sdpa: see sdpa.h. cuDNN 9's backend (graph) API, written against the
 * cudnn_graph.h of cuDNN 9.x; every call's status is checked and a failure
 * becomes the "unsupported" answer (with the call, cuDNN's status and its own
 * message) rather than a stop, because this path has a fallback.
 *
 * Planning, at the first use of a key, tries these operation graphs in turn
 * and keeps the first for which an engine config finalises into a plan:
 *  1. "composite": the decomposed flash-attention forward that
 *     cudnn-frontend emits and cuDNN's fused-attention engines recognise:
 *       S  = matmul(Q, K^T)                     [B, H, Nq, Nk] fp32, virtual
 *       Ss = S * scale (a by-value fp32 scalar)
 *       M  = reduce_max(Ss)  -> [B, H, Nq, 1];  E = exp(Ss - M)
 *       Z  = reduce_add(E)   -> [B, H, Nq, 1];  stats = M + log(Z) (virtual)
 *       P  = E / Z                              in the I/O dtype, virtual
 *       O  = matmul(P, V)
 *     The stats branch is what the frontend builds in inference too (the
 *     softmax statistics, left virtual), and it is needed: without it cuDNN
 *     9.19's heuristics offer no engine for the graph (seen by planning
 *     deviceless for an sm_90 description, where with it they offer the
 *     runtime-compiled fused-attention engines).
 *  2. "sdpa-op": the single SDPA forward operation of cuDNN >= 9.13.1
 *     (CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR; K given untransposed, as
 *     cudnn-frontend passes it). Second because the composite pattern is the
 *     one every 9.x knows, and the check in attn_select.cu would reject all
 *     of cuDNN, not just this graph, if it computed something else.
 * For each: heuristics mode A, then FALLBACK; the first engine config (of at
 * most SDPA_MAX_CFGS per mode) whose execution plan finalises wins. Our
 * layout is expressed by strides alone: element (b, h, s, d) of Q is at
 * q + (b*Nq + s)*ldq + h*dh + d, i.e. dims {B, H, Nq, dh}, strides {Nq*ldq,
 * dh, ldq, 1}; K^T is K's dims and strides with the last two swapped.
 * Plans are never re-made; a refused key is cached as refused. The workspace
 * only grows, and an outgrown one is retired, not freed, while a captured
 * CUDA graph may still point at it (freed with the context).
 * UNETLAB_LIB_LOG=1 prints one line per key to stderr. */
#include "sdpa.h"
#include "cuda_check.h"
#include <cudnn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Engine configs tried per heuristics mode: planning a config can mean a
 * runtime compilation, so a long list of failing ones must not stall start-up. */
#define SDPA_MAX_CFGS 8
/* Largest workspace a plan may ask for; fused attention forward needs little or none. */
#define SDPA_WS_MAX ((int64_t)256 << 20)

typedef struct {
    int64_t dt, B, Nq, Nk, heads, dh, ldq, ldk, ldv, ldo, align;
} SdpaKey; /* int64_t only: no padding, compared with memcmp */

/* unique ids of the tensors the variant pack names; virtual ones count up from UID_VIRT */
enum { UID_Q = 1, UID_K = 2, UID_V = 3, UID_O = 4, UID_SCALE = 5, UID_VIRT = 100 };

/* Every descriptor made while building one graph (destroyed together) and
 * the first failure, "<call>: <status>: <cuDNN's message>". Once a call has
 * failed, the helpers below do nothing, so a build reads as straight-line
 * code and reports the first thing cuDNN refused. */
typedef struct {
    cudnnBackendDescriptor_t *d;
    int n, cap;
    cudnnStatus_t st;
    char what[384];
    int64_t next_uid;
} Build;

typedef struct {
    SdpaKey key;
    int ok;                         /* 1 planned; 0 refused (why) */
    char why[512];
    const char *variant;            /* which graph of the list above */
    Build b;                        /* the winning graph's descriptors, plan included */
    cudnnBackendDescriptor_t plan;
    int64_t ws_need;
    float scale;                    /* the by-value operand: the variant pack points here */
    cudnnBackendDescriptor_t vp;    /* the last variant pack and the pointers it holds */
    const void *vq, *vk, *vv;
    void *vo, *vws;
} SdpaPlan;

struct CudnnSdpa {
    cudaStream_t s;
    cudnnHandle_t h;
    int h_state; /* 0 not made yet, 1 made, -1 cudnnCreate failed (h_why) */
    char h_why[256];
    CudaWorkspace ws;
    SdpaPlan **plans;
    int nplans, cap;
};

static void key_str(const SdpaKey *k, char *buf, size_t n) {
    snprintf(buf, n, "%s B%lld Nq%lld Nk%lld h%lld d%lld ld %lld/%lld/%lld/%lld align%lld", dtype_name((DType)k->dt),
             (long long)k->B, (long long)k->Nq, (long long)k->Nk, (long long)k->heads, (long long)k->dh,
             (long long)k->ldq, (long long)k->ldk, (long long)k->ldv, (long long)k->ldo, (long long)k->align);
}

/* src into dst[n], cut to fit (messages are for people; a cut one still names the call). */
static void copy_str(char *dst, size_t n, const char *src) {
    if (!n) return;
    size_t l = strlen(src);
    if (l >= n) l = n - 1;
    memcpy(dst, src, l);
    dst[l] = '\0';
}

/* "<call>: <status name>: <cuDNN's last message>" into buf, on one line. */
static void status_text(char *buf, size_t n, const char *call, cudnnStatus_t st) {
    char m[320];
    m[0] = '\0';
    cudnnGetLastErrorString(m, sizeof m);
    for (char *p = m; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
    snprintf(buf, n, "%s: %s%s%s", call, cudnnGetErrorString(st), m[0] ? ": " : "", m);
}

/* ---- building descriptors ---- */

static void b_fail(Build *b, cudnnStatus_t st, const char *call) {
    if (b->st != CUDNN_STATUS_SUCCESS) return;
    b->st = st;
    status_text(b->what, sizeof b->what, call, st);
}

static void b_push(Build *b, cudnnBackendDescriptor_t d) {
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 64;
        b->d = (cudnnBackendDescriptor_t *)xrealloc(b->d, (size_t)b->cap * sizeof *b->d);
    }
    b->d[b->n++] = d;
}

static void b_destroy(Build *b) {
    for (int i = b->n - 1; i >= 0; i--) cudnnBackendDestroyDescriptor(b->d[i]);
    free(b->d);
    memset(b, 0, sizeof *b);
}

static cudnnBackendDescriptor_t b_new(Build *b, cudnnBackendDescriptorType_t t, const char *tname) {
    if (b->st != CUDNN_STATUS_SUCCESS) return NULL;
    cudnnBackendDescriptor_t d = NULL;
    cudnnStatus_t st = cudnnBackendCreateDescriptor(t, &d);
    if (st != CUDNN_STATUS_SUCCESS) {
        char call[128];
        snprintf(call, sizeof call, "cudnnBackendCreateDescriptor(%s)", tname);
        b_fail(b, st, call);
        return NULL;
    }
    b_push(b, d);
    return d;
}

static void b_set(Build *b, cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t t,
                  int64_t n, const void *v, const char *aname, const char *on) {
    if (b->st != CUDNN_STATUS_SUCCESS) return;
    cudnnStatus_t st = cudnnBackendSetAttribute(d, a, t, n, v);
    if (st != CUDNN_STATUS_SUCCESS) {
        char call[160];
        snprintf(call, sizeof call, "cudnnBackendSetAttribute(%s, %s)", on, aname);
        b_fail(b, st, call);
    }
}

static void b_fin(Build *b, cudnnBackendDescriptor_t d, const char *on) {
    if (b->st != CUDNN_STATUS_SUCCESS) return;
    cudnnStatus_t st = cudnnBackendFinalize(d);
    if (st != CUDNN_STATUS_SUCCESS) {
        char call[128];
        snprintf(call, sizeof call, "cudnnBackendFinalize(%s)", on);
        b_fail(b, st, call);
    }
}

#define B_NEW(b, t) b_new((b), (t), #t)
/* `on` names the descriptor in a failure message */
#define B_SET(b, d, on, a, t, n, v) b_set((b), (d), (a), (t), (n), (v), #a, (on))

/* A tensor descriptor: 4-D, dims and strides in elements. */
static cudnnBackendDescriptor_t b_tensor(Build *b, const char *name, int64_t uid, cudnnDataType_t t,
                                         const int64_t dim[4], const int64_t str[4], int is_virtual, int by_value,
                                         int64_t align) {
    cudnnBackendDescriptor_t d = B_NEW(b, CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    B_SET(b, d, name, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &t);
    B_SET(b, d, name, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dim);
    B_SET(b, d, name, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, str);
    B_SET(b, d, name, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    B_SET(b, d, name, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
    const bool yes = true; /* CUDNN_TYPE_BOOLEAN is C++ bool (one byte) */
    if (is_virtual) B_SET(b, d, name, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &yes);
    if (by_value) B_SET(b, d, name, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &yes);
    b_fin(b, d, name);
    return d;
}

/* A virtual fp32 (or t) intermediate with a fresh uid. */
static cudnnBackendDescriptor_t b_virtual(Build *b, const char *name, cudnnDataType_t t, const int64_t dim[4],
                                          const int64_t str[4]) {
    return b_tensor(b, name, b->next_uid++, t, dim, str, 1, 0, 16);
}

/* y = mode(x) or mode(x, bb), computed in fp32. */
static cudnnBackendDescriptor_t b_pointwise(Build *b, const char *name, cudnnPointwiseMode_t mode,
                                            cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t bb,
                                            cudnnBackendDescriptor_t y) {
    const cudnnDataType_t prec = CUDNN_DATA_FLOAT;
    cudnnBackendDescriptor_t pw = B_NEW(b, CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    B_SET(b, pw, name, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    B_SET(b, pw, name, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec);
    b_fin(b, pw, name);
    cudnnBackendDescriptor_t op = B_NEW(b, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    B_SET(b, op, name, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw);
    B_SET(b, op, name, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    if (bb) B_SET(b, op, name, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &bb);
    B_SET(b, op, name, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    b_fin(b, op, name);
    return op;
}

/* y = reduce(x) over the dims where y has extent 1, in fp32. */
static cudnnBackendDescriptor_t b_reduction(Build *b, const char *name, cudnnReduceTensorOp_t red,
                                            cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    const cudnnDataType_t prec = CUDNN_DATA_FLOAT;
    cudnnBackendDescriptor_t rd = B_NEW(b, CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    B_SET(b, rd, name, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &prec);
    B_SET(b, rd, name, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &red);
    b_fin(b, rd, name);
    cudnnBackendDescriptor_t op = B_NEW(b, CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    B_SET(b, op, name, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &rd);
    B_SET(b, op, name, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    B_SET(b, op, name, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    b_fin(b, op, name);
    return op;
}

/* c = a @ b (batched over the leading dims), accumulated in fp32. */
static cudnnBackendDescriptor_t b_matmul(Build *b, const char *name, cudnnBackendDescriptor_t a,
                                         cudnnBackendDescriptor_t bm, cudnnBackendDescriptor_t c) {
    const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    cudnnBackendDescriptor_t md = B_NEW(b, CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    B_SET(b, md, name, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
    b_fin(b, md, name);
    cudnnBackendDescriptor_t op = B_NEW(b, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    B_SET(b, op, name, CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a);
    B_SET(b, op, name, CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &bm);
    B_SET(b, op, name, CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c);
    B_SET(b, op, name, CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &md);
    b_fin(b, op, name);
    return op;
}

/* ---- the operation graphs ---- */

enum { VAR_COMPOSITE, VAR_SDPA_OP, NVAR };
static const char *const VAR_NAME[NVAR] = {"composite", "sdpa-op"};

/* The finalised operation graph of variant var for key k into b (NULL with b->st set on failure). */
static cudnnBackendDescriptor_t build_graph(Build *b, cudnnHandle_t h, int var, const SdpaKey *k) {
    const cudnnDataType_t io = k->dt == DTYPE_F16 ? CUDNN_DATA_HALF : CUDNN_DATA_BFLOAT16, f32 = CUDNN_DATA_FLOAT;
    const int64_t B = k->B, H = k->heads, Nq = k->Nq, Nk = k->Nk, D = k->dh, al = k->align;
    b->next_uid = UID_VIRT;
    /* our layout, by strides: [B, H, S, D] with rows ld apart and heads D apart within a row */
    const int64_t q_dim[4] = {B, H, Nq, D}, q_str[4] = {Nq * k->ldq, D, k->ldq, 1};
    const int64_t k_dim[4] = {B, H, Nk, D}, k_str[4] = {Nk * k->ldk, D, k->ldk, 1};
    const int64_t kt_dim[4] = {B, H, D, Nk}, kt_str[4] = {Nk * k->ldk, D, 1, k->ldk}; /* K^T: same bytes */
    const int64_t v_dim[4] = {B, H, Nk, D}, v_str[4] = {Nk * k->ldv, D, k->ldv, 1};
    const int64_t o_dim[4] = {B, H, Nq, D}, o_str[4] = {Nq * k->ldo, D, k->ldo, 1};
    const int64_t one[4] = {1, 1, 1, 1};
    /* intermediates: dense [B, H, Nq, Nk] and per-row [B, H, Nq, 1] (virtual: their strides only order the dims) */
    const int64_t s_dim[4] = {B, H, Nq, Nk}, s_str[4] = {H * Nq * Nk, Nq * Nk, Nk, 1};
    const int64_t r_dim[4] = {B, H, Nq, 1}, r_str[4] = {H * Nq, Nq, 1, 1};

    cudnnBackendDescriptor_t tq = b_tensor(b, "Q", UID_Q, io, q_dim, q_str, 0, 0, al);
    cudnnBackendDescriptor_t tv = b_tensor(b, "V", UID_V, io, v_dim, v_str, 0, 0, al);
    cudnnBackendDescriptor_t to = b_tensor(b, "O", UID_O, io, o_dim, o_str, 0, 0, al);
    cudnnBackendDescriptor_t tscale = b_tensor(b, "scale", UID_SCALE, f32, one, one, 0, 1, 16);
    cudnnBackendDescriptor_t ops[12];
    int nops = 0;
    if (var == VAR_SDPA_OP) {
#if defined(CUDNN_VERSION) && CUDNN_VERSION >= 91301
        cudnnBackendDescriptor_t tk = b_tensor(b, "K", UID_K, io, k_dim, k_str, 0, 0, al);
        cudnnBackendDescriptor_t op = B_NEW(b, CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR);
        B_SET(b, op, "sdpa", CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tq);
        B_SET(b, op, "sdpa", CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tk);
        B_SET(b, op, "sdpa", CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tv);
        B_SET(b, op, "sdpa", CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &to);
        B_SET(b, op, "sdpa", CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tscale);
        b_fin(b, op, "sdpa");
        ops[nops++] = op;
#else
        (void)k_dim;
        (void)k_str;
        if (b->st == CUDNN_STATUS_SUCCESS) {
            b->st = CUDNN_STATUS_NOT_SUPPORTED;
            snprintf(b->what, sizeof b->what, "built against cuDNN headers without the SDPA operation (< 9.13.1)");
        }
#endif
    } else {
        cudnnBackendDescriptor_t tkt = b_tensor(b, "K^T", UID_K, io, kt_dim, kt_str, 0, 0, al);
        cudnnBackendDescriptor_t s = b_virtual(b, "S", f32, s_dim, s_str);
        cudnnBackendDescriptor_t ss = b_virtual(b, "S*scale", f32, s_dim, s_str);
        cudnnBackendDescriptor_t m = b_virtual(b, "max", f32, r_dim, r_str);
        cudnnBackendDescriptor_t sub = b_virtual(b, "S-max", f32, s_dim, s_str);
        cudnnBackendDescriptor_t e = b_virtual(b, "exp", f32, s_dim, s_str);
        cudnnBackendDescriptor_t z = b_virtual(b, "sum", f32, r_dim, r_str);
        cudnnBackendDescriptor_t p = b_virtual(b, "P", io, s_dim, s_str); /* the second matmul's A in the I/O type */
        ops[nops++] = b_matmul(b, "Q@K^T", tq, tkt, s);
        ops[nops++] = b_pointwise(b, "mul scale", CUDNN_POINTWISE_MUL, s, tscale, ss);
        ops[nops++] = b_reduction(b, "reduce max", CUDNN_REDUCE_TENSOR_MAX, ss, m);
        ops[nops++] = b_pointwise(b, "sub max", CUDNN_POINTWISE_SUB, ss, m, sub);
        ops[nops++] = b_pointwise(b, "exp", CUDNN_POINTWISE_EXP, sub, NULL, e);
        ops[nops++] = b_reduction(b, "reduce add", CUDNN_REDUCE_TENSOR_ADD, e, z);
        /* the softmax statistics, left virtual: the fused engines match the graph only with them */
        cudnnBackendDescriptor_t lz = b_virtual(b, "log sum", f32, r_dim, r_str);
        cudnnBackendDescriptor_t st = b_virtual(b, "stats", f32, r_dim, r_str);
        ops[nops++] = b_pointwise(b, "log", CUDNN_POINTWISE_LOG, z, NULL, lz);
        ops[nops++] = b_pointwise(b, "add stats", CUDNN_POINTWISE_ADD, m, lz, st);
        ops[nops++] = b_pointwise(b, "div", CUDNN_POINTWISE_DIV, e, z, p);
        ops[nops++] = b_matmul(b, "P@V", p, tv, to);
    }
    cudnnBackendDescriptor_t g = B_NEW(b, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    /* the handle attribute is deprecated in newer 9.x headers but still what every 9.x library reads */
    B_SET(b, g, "graph", CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
    B_SET(b, g, "graph", CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, nops, ops);
    b_fin(b, g, "graph");
    return b->st == CUDNN_STATUS_SUCCESS ? g : NULL;
}

/* The global index of the engine behind an engine config, -1 when cuDNN does not say (log only). */
static int64_t engine_index(cudnnBackendDescriptor_t cfg) {
    cudnnBackendDescriptor_t eng = NULL;
    int64_t id = -1, cnt = 0;
    if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &eng) != CUDNN_STATUS_SUCCESS) return -1;
    if (cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cnt, &eng) !=
            CUDNN_STATUS_SUCCESS ||
        cnt != 1 ||
        cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &cnt, &id) !=
            CUDNN_STATUS_SUCCESS)
        id = -1;
    cudnnBackendDestroyDescriptor(eng);
    return id;
}

/* Builds variant var and finalises a plan for it into p (0), or says why not (-1).
 * note gets "engine E (heuristics M, config i of n)" for the log. */
static int plan_variant(CudnnSdpa *c, SdpaPlan *p, int var, char *why, size_t whylen, char *note, size_t notelen) {
    Build b;
    memset(&b, 0, sizeof b);
    cudnnBackendDescriptor_t graph = build_graph(&b, c->h, var, &p->key);
    if (!graph) {
        copy_str(why, whylen, b.what);
        b_destroy(&b);
        return -1;
    }
    static const cudnnBackendHeurMode_t modes[2] = {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK};
    static const char *const mode_name[2] = {"A", "fallback"};
    char last[256];
    snprintf(last, sizeof last, "no engine config");
    int tried = 0;
    for (int mi = 0; mi < 2; mi++) {
        b.st = CUDNN_STATUS_SUCCESS; /* a failed mode must not hide the next one */
        cudnnBackendDescriptor_t heur = B_NEW(&b, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
        B_SET(&b, heur, "heuristics", CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph);
        B_SET(&b, heur, "heuristics", CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &modes[mi]);
        b_fin(&b, heur, "heuristics");
        if (b.st != CUDNN_STATUS_SUCCESS) {
            copy_str(last, sizeof last, b.what);
            continue;
        }
        int64_t count = 0;
        cudnnStatus_t st =
            cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, NULL);
        if (st != CUDNN_STATUS_SUCCESS) {
            status_text(last, sizeof last, "cudnnBackendGetAttribute(heuristics, CUDNN_ATTR_ENGINEHEUR_RESULTS count)",
                        st);
            continue;
        }
        if (count <= 0) {
            /* cuDNN drops the configs it cannot run (e.g. no libcuda or NVRTC for a runtime-compiled engine)
             * and says why only in its own log */
            snprintf(last, sizeof last,
                     "heuristics mode %s offers no engine config (CUDNN_LOGLEVEL_DBG=2 CUDNN_LOGDEST_DBG=stderr "
                     "shows cuDNN's reasons)",
                     mode_name[mi]);
            continue;
        }
        if (count > SDPA_MAX_CFGS) count = SDPA_MAX_CFGS;
        cudnnBackendDescriptor_t cfg[SDPA_MAX_CFGS];
        for (int64_t i = 0; i < count; i++) cfg[i] = B_NEW(&b, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
        if (b.st != CUDNN_STATUS_SUCCESS) {
            copy_str(last, sizeof last, b.what);
            continue;
        }
        int64_t got = 0;
        st = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got,
                                      cfg);
        if (st != CUDNN_STATUS_SUCCESS) {
            status_text(last, sizeof last, "cudnnBackendGetAttribute(heuristics, CUDNN_ATTR_ENGINEHEUR_RESULTS)", st);
            continue;
        }
        for (int64_t i = 0; i < got && i < count; i++) {
            cudnnBackendDescriptor_t plan = NULL;
            tried++;
            st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan);
            if (st != CUDNN_STATUS_SUCCESS) {
                status_text(last, sizeof last, "cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR)",
                            st);
                continue;
            }
            const char *call = "cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE)";
            st = cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &c->h);
            if (st == CUDNN_STATUS_SUCCESS) {
                call = "cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG)";
                st = cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                              CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg[i]);
            }
            if (st == CUDNN_STATUS_SUCCESS) {
                call = "cudnnBackendFinalize(plan)";
                st = cudnnBackendFinalize(plan);
            }
            int64_t ws = 0, n1 = 0;
            if (st == CUDNN_STATUS_SUCCESS) {
                call = "cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE)";
                st = cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n1,
                                              &ws);
            }
            if (st != CUDNN_STATUS_SUCCESS) {
                status_text(last, sizeof last, call, st);
                cudnnBackendDestroyDescriptor(plan);
                continue;
            }
            if (ws < 0 || ws > SDPA_WS_MAX) {
                snprintf(last, sizeof last, "engine config %lld wants %lld B of workspace", (long long)i, (long long)ws);
                cudnnBackendDestroyDescriptor(plan);
                continue;
            }
            b_push(&b, plan); /* kept with everything it was made from */
            p->plan = plan;
            p->ws_need = ws;
            p->variant = VAR_NAME[var];
            p->b = b;
            snprintf(note, notelen, "engine %lld (heuristics %s, config %lld of %lld)", (long long)engine_index(cfg[i]),
                     mode_name[mi], (long long)i + 1, (long long)got);
            return 0;
        }
    }
    snprintf(why, whylen, "no execution plan finalises (%d engine configs tried); last: %s", tried, last);
    b_destroy(&b);
    return -1;
}

/* ---- workspace, handle ---- */

static void ensure_ws(CudnnSdpa *c, size_t need) { cuda_ws_ensure(&c->ws, need); }

/* The handle, made at first need; 0, or -1 with why. */
static int ensure_handle(CudnnSdpa *c, char *why, size_t whylen) {
    if (c->h_state == 0) {
        cudnnStatus_t st = cudnnCreate(&c->h);
        if (st == CUDNN_STATUS_SUCCESS) {
            st = cudnnSetStream(c->h, c->s);
            if (st != CUDNN_STATUS_SUCCESS) {
                status_text(c->h_why, sizeof c->h_why, "cudnnSetStream", st);
                cudnnDestroy(c->h);
                c->h = NULL;
            }
        } else {
            status_text(c->h_why, sizeof c->h_why, "cudnnCreate", st);
            c->h = NULL;
        }
        c->h_state = c->h ? 1 : -1;
    }
    if (c->h_state < 0) copy_str(why, whylen, c->h_why);
    return c->h_state > 0 ? 0 : -1;
}

/* What rules the shape out before cuDNN is asked (NULL: ask it). The version
 * and architecture limits are cudnn-frontend's for the fused forward. */
static const char *refuse_early(const SdpaKey *k, char *buf, size_t n) {
    if (k->dt == DTYPE_F32) return "fp32 I/O: cuDNN's fused attention takes fp16 or bf16 only";
    if (k->B < 1 || k->Nq < 1 || k->Nk < 1 || k->heads < 1 || k->dh < 1) return "empty shape";
    if (k->dh % 8 || k->dh > 256) {
        snprintf(buf, n, "head dim %lld: cuDNN's fused attention needs a multiple of 8 up to 256", (long long)k->dh);
        return buf;
    }
    int64_t C = k->heads * k->dh;
    if (k->ldq < C || k->ldk < C || k->ldv < C || k->ldo < C) return "a row stride is smaller than heads * dh";
    size_t v = cudnnGetVersion();
    if (v < 90000) {
        snprintf(buf, n, "cuDNN %zu is older than 9.0", v);
        return buf;
    }
    if (v == 91000 || v == 91001) return "cuDNN 9.10.0 and 9.10.1 have a known fused-attention forward bug";
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
        cudaGetLastError(); /* not sticky: clear it */
        return "cannot read the device's compute capability";
    }
    if (major < 8) {
        snprintf(buf, n, "sm_%d%d: cuDNN's fused attention needs sm_80 or newer", major, minor);
        return buf;
    }
    return NULL;
}

static SdpaKey make_key(DType dt, int64_t B, int64_t Nq, int64_t Nk, int heads, int dh, int64_t ldq, int64_t ldk,
                        int64_t ldv, int64_t ldo, const void *q, const void *k, const void *v, const void *o) {
    int64_t al = cuda_ptr_align(q);
    const void *ptrs[3] = {k, v, o};
    for (int i = 0; i < 3; i++)
        if (cuda_ptr_align(ptrs[i]) < al) al = cuda_ptr_align(ptrs[i]);
    SdpaKey key = {(int64_t)dt, B, Nq, Nk, heads, dh, ldq, ldk, ldv, ldo, al};
    return key;
}

static SdpaPlan *find_plan(const CudnnSdpa *c, const SdpaKey *key) {
    for (int i = 0; i < c->nplans; i++)
        if (!memcmp(&c->plans[i]->key, key, sizeof *key)) return c->plans[i];
    return NULL;
}

/* ---- public ---- */

extern "C" CudnnSdpa *cudnn_sdpa_new(cudaStream_t s) {
    CudnnSdpa *c = (CudnnSdpa *)xcalloc(1, sizeof *c);
    c->s = s;
    return c;
}

extern "C" void cudnn_sdpa_free(CudnnSdpa *c) {
    if (!c) return;
    CUDA_CHECK(cudaStreamSynchronize(c->s));
    for (int i = 0; i < c->nplans; i++) {
        SdpaPlan *p = c->plans[i];
        if (p->vp) cudnnBackendDestroyDescriptor(p->vp);
        b_destroy(&p->b);
        free(p);
    }
    free(c->plans);
    cuda_ws_free(&c->ws);
    if (c->h) cudnnDestroy(c->h);
    free(c);
}

extern "C" int cudnn_sdpa_prepare(CudnnSdpa *c, DType dt, int64_t B, int64_t Nq, int64_t Nk, int heads, int dh,
                                  int64_t ldq, int64_t ldk, int64_t ldv, int64_t ldo, const void *q, const void *k,
                                  const void *v, const void *o, char *why, size_t whylen) {
    SdpaKey key = make_key(dt, B, Nq, Nk, heads, dh, ldq, ldk, ldv, ldo, q, k, v, o);
    SdpaPlan *p = find_plan(c, &key);
    if (!p) {
        char ks[160];
        key_str(&key, ks, sizeof ks);
        double t0 = cuda_now_ms();
        p = (SdpaPlan *)xcalloc(1, sizeof *p);
        p->key = key;
        p->scale = 1.0f / sqrtf((float)dh);
        char buf[160], note[128] = "";
        const char *early = refuse_early(&key, buf, sizeof buf);
        if (early) {
            copy_str(p->why, sizeof p->why, early);
        } else {
            if (cuda_capturing(c->s))
                die("cudnn_sdpa: attention shape %s first seen while the stream is being captured (planning "
                    "cannot happen then); run one forward before capturing",
                    ks);
            if (ensure_handle(c, p->why, sizeof p->why) == 0) {
                /* each variant's reason, so the first GPU run says what each graph hit */
                size_t used = 0;
                p->why[0] = '\0';
                for (int var = 0; var < NVAR && !p->ok; var++) {
                    char r[512];
                    if (var == VAR_SDPA_OP && cudnnGetVersion() < 91301) {
                        snprintf(r, sizeof r, "needs cuDNN >= 9.13.1");
                    } else if (plan_variant(c, p, var, r, sizeof r, note, sizeof note) == 0) {
                        p->ok = 1;
                        break;
                    }
                    if (used < sizeof p->why)
                        used += (size_t)snprintf(p->why + used, sizeof p->why - used, "%s%s: %s", used ? "; " : "",
                                                 VAR_NAME[var], r);
                }
                if (p->ok) {
                    p->why[0] = '\0';
                    ensure_ws(c, (size_t)p->ws_need);
                }
            }
        }
        if (c->nplans == c->cap) {
            c->cap = c->cap ? 2 * c->cap : 16;
            c->plans = (SdpaPlan **)xrealloc(c->plans, (size_t)c->cap * sizeof *c->plans);
        }
        c->plans[c->nplans++] = p;
        if (cuda_lib_log()) {
            if (p->ok)
                fprintf(stderr, "cudnn sdpa plan %s: %s, %s, ws %lld B; planned in %.0f ms\n", ks, p->variant, note,
                        (long long)p->ws_need, cuda_now_ms() - t0);
            else
                fprintf(stderr, "cudnn sdpa plan %s: unsupported: %s\n", ks, p->why);
        }
    }
    if (!p->ok) copy_str(why, whylen, p->why);
    return p->ok ? 0 : -1;
}

extern "C" int cudnn_sdpa_exec(CudnnSdpa *c, DType dt, int64_t B, int64_t Nq, int64_t Nk, int heads, int dh,
                               int64_t ldq, int64_t ldk, int64_t ldv, int64_t ldo, const void *q, const void *k,
                               const void *v, void *o, char *why, size_t whylen) {
    SdpaKey key = make_key(dt, B, Nq, Nk, heads, dh, ldq, ldk, ldv, ldo, q, k, v, o);
    SdpaPlan *p = find_plan(c, &key);
    if (!p || !p->ok) {
        snprintf(why, whylen, "not planned%s%s", p ? ": " : " (cudnn_sdpa_prepare first)", p ? p->why : "");
        return -1;
    }
    if (!p->vp || p->vq != q || p->vk != k || p->vv != v || p->vo != o || p->vws != c->ws.p) {
        /* a finalised variant pack cannot be changed: a new one for new pointers */
        if (p->vp) cudnnBackendDestroyDescriptor(p->vp);
        p->vp = NULL;
        const int64_t uids[5] = {UID_Q, UID_K, UID_V, UID_O, UID_SCALE};
        void *ptrs[5] = {(void *)q, (void *)k, (void *)v, o, &p->scale};
        void *ws = c->ws.p;
        const char *call = "cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR)";
        cudnnBackendDescriptor_t vp = NULL;
        cudnnStatus_t st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &vp);
        if (st == CUDNN_STATUS_SUCCESS) {
            call = "cudnnBackendSetAttribute(variant pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS)";
            st = cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 5, uids);
        }
        if (st == CUDNN_STATUS_SUCCESS) {
            call = "cudnnBackendSetAttribute(variant pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS)";
            st = cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 5, ptrs);
        }
        if (st == CUDNN_STATUS_SUCCESS) {
            call = "cudnnBackendSetAttribute(variant pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE)";
            st = cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws);
        }
        if (st == CUDNN_STATUS_SUCCESS) {
            call = "cudnnBackendFinalize(variant pack)";
            st = cudnnBackendFinalize(vp);
        }
        if (st != CUDNN_STATUS_SUCCESS) {
            status_text(why, whylen, call, st);
            if (vp) cudnnBackendDestroyDescriptor(vp);
            return -1;
        }
        p->vp = vp;
        p->vq = q;
        p->vk = k;
        p->vv = v;
        p->vo = o;
        p->vws = ws;
    }
    cudnnStatus_t st = cudnnBackendExecute(c->h, p->plan, p->vp);
    if (st != CUDNN_STATUS_SUCCESS) {
        status_text(why, whylen, "cudnnBackendExecute", st);
        return -1;
    }
    return 0;
}

extern "C" void cudnn_sdpa_run(CudnnSdpa *c, DType dt, int64_t B, int64_t Nq, int64_t Nk, int heads, int dh,
                               int64_t ldq, int64_t ldk, int64_t ldv, int64_t ldo, const void *q, const void *k,
                               const void *v, void *o) {
    char why[512];
    if (cudnn_sdpa_exec(c, dt, B, Nq, Nk, heads, dh, ldq, ldk, ldv, ldo, q, k, v, o, why, sizeof why) != 0) {
        char ks[160];
        SdpaKey key = make_key(dt, B, Nq, Nk, heads, dh, ldq, ldk, ldv, ldo, q, k, v, o);
        key_str(&key, ks, sizeof ks);
        die("cudnn_sdpa_run %s: %s", ks, why);
    }
}

extern "C" size_t cudnn_sdpa_workspace_bytes(const CudnnSdpa *c) { return c->ws.bytes + c->ws.retired_bytes; }
