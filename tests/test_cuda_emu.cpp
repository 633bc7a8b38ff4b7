/* test_cuda_emu: the grid-stride kernels of kernels/cuda/ops_kernels.cuh (the
 * code nvcc compiles into ops.cu) run on the CPU through kernels/cuda/emu.h,
 * every (block, thread) in turn, against kernels/cpu/ops.c. It checks what a
 * GPU adds nothing to: indexing, pack widths and tails, pointer alignment
 * (a misaligned pack is a fault), and that any grid covers the data: each
 * case runs with the grid ops.cu's launcher would pick on a 132-SM device,
 * on a 1-SM device (every thread loops) and a 3 x 32 grid. The launchers'
 * few lines of sizing (which helper with which work count) are repeated
 * here; the helpers themselves (pick_vec, grid_for_sms) are shared. fp32,
 * fp16 and bf16; sizes off the pack widths, pointers off alignment. Data
 * movement (convert, upsample, concat) must be exact, the rest within
 * test_cuda_ops's tolerances. The group norm's two passes run too: pass 1
 * as its block program of steps between barriers, thread by thread (see
 * test_group_norm). What it cannot see: device arithmetic (erff, expf,
 * rsqrtf, fma, the hardware conversions), the memory ordering between
 * blocks (the group norm's fences and counter), races between warps beyond
 * what reordering the threads of a step shows, and the kernels with shuffles
 * (layer norm, attention), which only tests/test_cuda_ops.c on a GPU
 * checks. The convolution's bias/residual
 * epilogue (cuk_bias_res, which kernels/cudnn/conv.cu calls) is here too. Host C++ with the CUDA headers'
 * host fp16/bf16 code; no CUDA runtime, so it runs in every build. */
#include "emu.h"

#include "ops_kernels.cuh"

extern "C" {
#include "half.h"
#include "ops.h"
#include "tensor.h"
}
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utility>
#include <vector>

static const DType DTS[3] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16};

/* ---------- values ---------- */

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static float urand(float lo, float hi) { /* xorshift64* */
    rs ^= rs >> 12, rs ^= rs << 25, rs ^= rs >> 27;
    return lo + (hi - lo) * (float)((rs * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
}

static float round_dt(float v, DType dt) {
    return dt == DTYPE_F32 ? v : dt == DTYPE_F16 ? half_to_f32(f32_to_half(v)) : bf16_to_f32(f32_to_bf16(v));
}
static float get(const void *p, int64_t i, DType dt) {
    if (dt == DTYPE_F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return dt == DTYPE_F16 ? half_to_f32(h) : bf16_to_f32(h);
}
static void put(void *p, int64_t i, DType dt, float v) {
    if (dt == DTYPE_F32) ((float *)p)[i] = v;
    else ((uint16_t *)p)[i] = dt == DTYPE_F16 ? f32_to_half(v) : f32_to_bf16(v);
}

/* n values uniform in [-s, s], rounded to dt (what the device would hold). */
static float *rnd(int64_t n, float s, DType dt) {
    float *x = (float *)xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = round_dt(urand(-s, s), dt);
    return x;
}

/* ---------- buffers ----------
 * An input is malloc'd to its exact size (ASan sees a read past its end),
 * `off` elements past malloc's 16-byte alignment. An output has GUARD bytes
 * of 0xFF (NaN in every dtype, so an element never written fails too) on
 * both sides, which must come back untouched. */
#define GUARD 64

struct Buf {
    unsigned char *base;
    void *p;
    size_t lead, bytes;
};

static Buf buf_in(const float *x, int64_t n, DType dt, int off) {
    Buf b;
    b.lead = (size_t)off * dtype_size(dt);
    b.bytes = (size_t)n * dtype_size(dt);
    b.base = (unsigned char *)xmalloc(b.lead + b.bytes + (b.lead + b.bytes == 0));
    if ((uintptr_t)b.base % 16) die("test_cuda_emu: malloc returned a pointer not 16-byte aligned");
    b.p = b.base + b.lead;
    for (int64_t i = 0; i < n; i++) put(b.p, i, dt, x[i]);
    return b;
}

static Buf buf_out(int64_t n, DType dt, int off, const float *init = NULL) {
    Buf b;
    b.lead = GUARD + (size_t)off * dtype_size(dt);
    b.bytes = (size_t)n * dtype_size(dt);
    b.base = (unsigned char *)xmalloc(b.lead + b.bytes + GUARD);
    memset(b.base, 0xFF, b.lead + b.bytes + GUARD);
    b.p = b.base + b.lead;
    if (init)
        for (int64_t i = 0; i < n; i++) put(b.p, i, dt, init[i]);
    return b;
}

static bool guards_ok(const Buf &b) {
    for (size_t i = 0; i < b.lead; i++)
        if (b.base[i] != 0xFF) return false;
    for (size_t i = 0; i < GUARD; i++)
        if (b.base[b.lead + b.bytes + i] != 0xFF) return false;
    return true;
}

/* ---------- launches ----------
 * Cfg 0 and 1: the launcher's grid for a device of 132 SMs (an H100 / H200)
 * and of 1 SM (geglu's grid does not depend on it: the same twice); cfg 2:
 * 3 blocks of 32 threads (geglu: 2 x 3 blocks). */
struct Cfg {
    const char *name;
    int sms;
};
static const Cfg CFGS[3] = {{"grid@132sm", 132}, {"grid@1sm", 1}, {"grid3x32", 0}};

struct Launch {
    dim3 grid, block;
};
static Launch grid1(const Cfg &c, int64_t work) {
    if (c.sms == 0) return Launch{dim3(3), dim3(32)};
    return Launch{dim3(grid_for_sms(work, 256, c.sms)), dim3(256)};
}

/* The launchers of ops.cu with emu_launch for <<<>>>; each returns the pack
 * width it ran. vforce > 0 overrides pick_vec (the failure checks give a
 * width the launcher would not). */
template <typename F> static int emu_map(void *x, DType dt, int64_t n, F f, const Cfg &c, int vforce = 0) {
    const int v = vforce ? vforce : pick_vec(dt, 0, x);
    DISPATCH_T(dt, DISPATCH_V(v, {
        const Launch l = grid1(c, n / VW > 0 ? n / VW : 1);
        emu_launch(l.grid, l.block, k_map<T, VW, F>, (T *)x, n, f);
    }));
    return v;
}

static int emu_add(void *y, const void *x, DType dt, int64_t n, float scale, const Cfg &c, int vforce = 0) {
    const int v = vforce ? vforce : pick_vec(dt, 0, y, x);
    DISPATCH_T(dt, DISPATCH_V(v, {
        const Launch l = grid1(c, n / VW > 0 ? n / VW : 1);
        emu_launch(l.grid, l.block, k_add<T, VW>, (T *)y, (const T *)x, n, scale);
    }));
    return v;
}

template <typename X> static void emu_convert_from(const X *x, void *y, DType yt, int64_t n, int v, const Cfg &c) {
    const Launch l = grid1(c, n / 4 > 0 ? n / 4 : 1);
    DISPATCH_T(yt, {
        if (v == 4) emu_launch(l.grid, l.block, k_convert<X, T, 4>, x, (T *)y, n);
        else emu_launch(l.grid, l.block, k_convert<X, T, 1>, x, (T *)y, n);
    });
}
static int emu_convert(const void *x, DType xt, void *y, DType yt, int64_t n, const Cfg &c) {
    const int v = aligned_to(x, 4 * dtype_size(xt)) && aligned_to(y, 4 * dtype_size(yt)) ? 4 : 1;
    DISPATCH_T(xt, emu_convert_from<T>((const T *)x, y, yt, n, v, c));
    return v;
}

static int emu_geglu(const void *h, void *out, DType dt, int64_t M, int64_t I, const Cfg &c, int vforce = 0) {
    const int v = vforce ? vforce : pick_vec(dt, I, h, out);
    const int64_t ip = I / v;
    int64_t gx = (ip + 255) / 256;
    if (gx > 1024) gx = 1024;
    const unsigned gy = (unsigned)(M < 65535 ? M : 65535);
    const Launch l = c.sms ? Launch{dim3((unsigned)gx, gy), dim3(256)} : Launch{dim3(2, 3), dim3(32)};
    DISPATCH_T(dt, DISPATCH_V(v, { emu_launch(l.grid, l.block, k_geglu<T, VW>, (const T *)h, (T *)out, M, I); }));
    return v;
}

/* cuk_bias_res, as ops.cu launches it. */
static int emu_bias_res(void *y, const void *bias, const void *res, DType dt, int64_t rows, int64_t C, const Cfg &c) {
    const int v = pick_vec(dt, C, y, bias, res);
    DISPATCH_T(dt, DISPATCH_V(v, {
        const Launch l = grid1(c, rows * (C / VW));
        emu_launch(l.grid, l.block, k_bias_res<T, VW>, (T *)y, (const T *)bias, (const T *)res, rows, C);
    }));
    return v;
}

static int emu_upsample2x(const void *x, void *y, DType dt, int64_t B, int64_t H, int64_t W, int64_t C,
                          const Cfg &c) {
    const int v = pick_vec(dt, C, x, y);
    DISPATCH_T(dt, DISPATCH_V(v, {
        const Launch l = grid1(c, B * H * W * (C / VW));
        emu_launch(l.grid, l.block, k_upsample2x<T, VW>, (const T *)x, (T *)y, B, H, W, C);
    }));
    return v;
}

static int emu_concat_last(const void *a, int64_t Ca, const void *b, int64_t Cb, void *y, DType dt, int64_t rows,
                           const Cfg &c) {
    int v = pick_vec(dt, Ca, a, b, y);
    while (v > 1 && Cb % v) v /= 2;
    DISPATCH_T(dt, DISPATCH_V(v, {
        const Launch l = grid1(c, rows * ((Ca + Cb) / VW));
        emu_launch(l.grid, l.block, k_concat_last<T, VW>, (const T *)a, Ca, (const T *)b, Cb, (T *)y, rows);
    }));
    return v;
}

static void emu_timestep(const float *t, int64_t n, int dim, int flip, float freq_shift, void *out, DType dt,
                         const Cfg &c) {
    const int half = dim / 2;
    const float neg_log = (float)-log(10000.0), denom = (float)half - freq_shift;
    const int64_t work = n * (half > 0 ? half : 1);
    const Launch l = grid1(c, work);
    DISPATCH_T(dt, emu_launch(l.grid, l.block, k_timestep<T>, t, n, dim, flip, neg_log, denom, (T *)out));
}

/* ---------- checking ---------- */

/* test_cuda_ops's per-element tolerance: |got - ref| <= atol * max|ref| + rtol * |ref|. */
static double tol_of(DType dt) { return dt == DTYPE_F32 ? 1e-5 : dt == DTYPE_F16 ? 2e-3 : 1.6e-2; }

/* Elements of got (n in dt) that miss ref: exact compares the bits with ref
 * rounded to dt, else the tolerance above; NaN or Inf always misses unless
 * exact and ref has it. Describes the first miss into why. */
static int64_t misses(const void *got, DType dt, const float *ref, int64_t n, bool exact, char *why, size_t wsz) {
    double refmax = 0;
    for (int64_t i = 0; i < n; i++) refmax = fmax(refmax, fabs((double)ref[i]));
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const float g = get(got, i, dt), r = ref[i];
        bool ok;
        if (exact) {
            uint32_t want = 0;
            put(&want, 0, dt, r);
            ok = !memcmp((const unsigned char *)got + i * dtype_size(dt), &want, dtype_size(dt));
        } else {
            const double t = tol_of(dt);
            ok = isfinite(g) && fabs((double)g - r) <= t * refmax + t * fabs((double)r);
        }
        if (!ok && bad++ == 0) snprintf(why, wsz, "[%lld] got %.9g want %.9g", (long long)i, (double)g, (double)r);
    }
    return bad;
}

static int ncases;

/* One case: out (n elements in dt) against ref, its guards, and no emulated fault. */
static void verdict(const char *label, const Buf &out, DType dt, const float *ref, int64_t n, bool exact) {
    char why[160] = "";
    const int64_t bad = misses(out.p, dt, ref, n, exact, why, sizeof why);
    const bool guards = guards_ok(out);
    CHECK_MSG(bad == 0 && guards && emu_faults == 0, "%s: %lld wrong (first %s)%s%s%s", label, (long long)bad, why,
              guards ? "" : ", guard bytes overwritten", emu_faults ? ", fault: " : "",
              emu_faults ? emu_fault_msg : "");
    emu_faults = 0;
    ncases++;
}

/* seen[kernel][dtype] bit v: the pack widths each kernel ran, for the coverage check. */
enum { K_MAP, K_ADD, K_CONVERT, K_GEGLU, K_UPSAMPLE, K_CONCAT, K_BIAS_RES, K_GN, K_N };
static const char *const KNAME[K_N] = {"k_map",        "k_add",         "k_convert",  "k_geglu",
                                       "k_upsample2x", "k_concat_last", "k_bias_res", "group_norm"};
static unsigned seen[K_N][3];

/* Pointer offsets in elements: every pack width of every dtype, and pointers of one call misaligned differently. */
static const int OFFS[][3] = {{0, 0, 0}, {1, 1, 1}, {2, 2, 2}, {4, 4, 4}, {0, 1, 0}, {2, 0, 4}};
#define NOFFS (int)(sizeof OFFS / sizeof OFFS[0])
static const int64_t NS[] = {1, 7, 8, 9, 1023, 4097, 100003};

/* ---------- the kernels ---------- */

static void test_map_add(void) {
    for (int d = 0; d < 3; d++)
        for (int64_t n : NS)
            for (int o = 0; o < NOFFS; o++)
                for (int ci = 0; ci < 3; ci++) {
                    const DType dt = DTS[d];
                    const Cfg &c = CFGS[ci];
                    const int es = (int)dtype_size(dt);
                    float *x = rnd(n, 4.0f, dt), *y = rnd(n, 4.0f, dt), *ref = (float *)xmalloc((size_t)n * 4);
                    /* the launcher's width, then every other width the alignment allows */
                    for (int vf = 0; vf <= 16 / es; vf = vf ? 2 * vf : 1) {
                        const int oy = OFFS[o][0], ox = OFFS[o][1];
                        if (vf && (oy * es % (vf * es) || ox * es % (vf * es))) continue;
                        char label[128];
                        for (int op = 0; op < 3; op++) {
                            Buf by = buf_out(n, dt, oy, y), bx = buf_in(x, n, dt, ox);
                            int v;
                            memcpy(ref, y, (size_t)n * 4);
                            if (op == 0) {
                                const float a = 2.0f, b = -1.0f; /* center_input_sample */
                                for (int64_t i = 0; i < n; i++) ref[i] = a * ref[i] + b;
                                v = emu_map(by.p, dt, n, AffineF{a, b}, c, vf);
                            } else if (op == 1) {
                                op_silu(ref, n);
                                v = emu_map(by.p, dt, n, SiluF{}, c, vf);
                            } else {
                                const float scale = n % 2 ? 1.0f : 0.70710678f;
                                op_add(ref, x, n);
                                for (int64_t i = 0; i < n; i++) ref[i] *= scale;
                                v = emu_add(by.p, bx.p, dt, n, scale, c, vf);
                            }
                            seen[op < 2 ? K_MAP : K_ADD][d] |= 1u << v;
                            snprintf(label, sizeof label, "%s %s n%lld off%d/%d %s V%d",
                                     op == 0 ? "affine" : op == 1 ? "silu" : "add", dtype_name(dt), (long long)n, oy,
                                     ox, c.name, v);
                            verdict(label, by, dt, ref, n, false);
                            free(by.base);
                            free(bx.base);
                        }
                    }
                    free(x);
                    free(y);
                    free(ref);
                }
}

static void test_convert(void) {
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            for (int64_t n : NS)
                for (int o = 0; o < NOFFS; o++)
                    for (int ci = 0; ci < 3; ci++) {
                        const DType xt = DTS[a], yt = DTS[b];
                        float *x = rnd(n, 3.0f, xt), *ref = (float *)xmalloc((size_t)n * 4);
                        /* edges of the formats: fp16's largest, its overflow to inf, subnormals, -0, bf16's range */
                        const float edge[] = {65504.0f, 65520.0f, 1e-7f, -0.0f, 3.0e38f, 1e-40f, -65519.0f};
                        for (int i = 0; i < 7 && i + 1 < n; i++) x[i + 1] = round_dt(edge[i], xt);
                        for (int64_t i = 0; i < n; i++) ref[i] = round_dt(x[i], yt);
                        Buf bx = buf_in(x, n, xt, OFFS[o][0]), by = buf_out(n, yt, OFFS[o][1]);
                        const int v = emu_convert(bx.p, xt, by.p, yt, n, CFGS[ci]);
                        seen[K_CONVERT][a] |= 1u << v;
                        char label[128];
                        snprintf(label, sizeof label, "convert %s->%s n%lld off%d/%d %s V%d", dtype_name(xt),
                                 dtype_name(yt), (long long)n, OFFS[o][0], OFFS[o][1], CFGS[ci].name, v);
                        verdict(label, by, yt, ref, n, true);
                        free(bx.base);
                        free(by.base);
                        free(x);
                        free(ref);
                    }
}

static void test_geglu(void) {
    const int64_t Ms[] = {1, 3, 17}, Is[] = {1, 7, 8, 9, 320, 1023, 1280};
    for (int d = 0; d < 3; d++)
        for (int64_t M : Ms)
            for (int64_t I : Is)
                for (int o = 0; o < NOFFS; o++)
                    for (int ci = 0; ci < 3; ci++) {
                        const DType dt = DTS[d];
                        float *h = rnd(M * 2 * I, 3.0f, dt), *ref = (float *)xmalloc((size_t)(M * I) * 4);
                        op_geglu(h, M, I, ref);
                        Buf bh = buf_in(h, M * 2 * I, dt, OFFS[o][0]), bo = buf_out(M * I, dt, OFFS[o][1]);
                        const int v = emu_geglu(bh.p, bo.p, dt, M, I, CFGS[ci]);
                        seen[K_GEGLU][d] |= 1u << v;
                        char label[128];
                        snprintf(label, sizeof label, "geglu %s M%lld I%lld off%d/%d %s V%d", dtype_name(dt),
                                 (long long)M, (long long)I, OFFS[o][0], OFFS[o][1], CFGS[ci].name, v);
                        verdict(label, bo, dt, ref, M * I, false);
                        free(bh.base);
                        free(bo.base);
                        free(h);
                        free(ref);
                    }
}

/* The convolution's epilogue: y += bias (per channel) + res, with either
 * one absent; the sum in fp32 as the kernel takes it, so bit for bit. */
static void test_bias_res(void) {
    const int64_t Rs[] = {1, 3, 17}, Cs[] = {1, 3, 8, 9, 77, 320, 1280};
    for (int d = 0; d < 3; d++)
        for (int64_t rows : Rs)
            for (int64_t C : Cs)
                for (int which = 1; which <= 3; which++) /* 1 bias, 2 res, 3 both */
                    for (int o = 0; o < NOFFS; o++)
                        for (int ci = 0; ci < 3; ci++) {
                            const DType dt = DTS[d];
                            const int64_t n = rows * C;
                            float *y = rnd(n, 3.0f, dt), *bias = rnd(C, 1.0f, dt), *res = rnd(n, 3.0f, dt),
                                  *ref = (float *)xmalloc((size_t)n * 4);
                            for (int64_t i = 0; i < n; i++) {
                                float v = y[i];
                                if (which & 1) v += bias[i % C];
                                if (which & 2) v += res[i];
                                ref[i] = v;
                            }
                            Buf by = buf_out(n, dt, OFFS[o][0], y), bb = buf_in(bias, C, dt, OFFS[o][1]),
                                br = buf_in(res, n, dt, OFFS[o][2]);
                            const int v = emu_bias_res(by.p, which & 1 ? bb.p : NULL, which & 2 ? br.p : NULL, dt,
                                                       rows, C, CFGS[ci]);
                            seen[K_BIAS_RES][d] |= 1u << v;
                            char label[128];
                            snprintf(label, sizeof label, "bias_res %s rows%lld C%lld %s off%d/%d/%d %s V%d",
                                     dtype_name(dt), (long long)rows, (long long)C,
                                     which == 1 ? "bias" : which == 2 ? "res" : "bias+res", OFFS[o][0], OFFS[o][1],
                                     OFFS[o][2], CFGS[ci].name, v);
                            verdict(label, by, dt, ref, n, true);
                            free(by.base);
                            free(bb.base);
                            free(br.base);
                            free(y);
                            free(bias);
                            free(res);
                            free(ref);
                        }
}

static void test_upsample(void) {
    const int64_t BHW[][3] = {{1, 1, 1}, {2, 3, 5}, {1, 8, 8}}, Cs[] = {1, 3, 8, 77, 320};
    for (int d = 0; d < 3; d++)
        for (const auto &s : BHW)
            for (int64_t C : Cs)
                for (int o = 0; o < NOFFS; o++)
                    for (int ci = 0; ci < 3; ci++) {
                        const DType dt = DTS[d];
                        const int64_t B = s[0], H = s[1], W = s[2], n = B * H * W * C;
                        float *x = rnd(n, 3.0f, dt), *xn = (float *)xmalloc((size_t)n * 4),
                              *ref = (float *)xmalloc((size_t)n * 16);
                        /* NHWC <-> the CPU reference's NCHW */
                        op_nlc_to_nchw(x, B, C, H * W, xn);
                        const Tensor tx = {xn, 4, {B, C, H, W}};
                        Tensor ty = op_upsample2x(&tx);
                        op_nchw_to_nlc(ty.d, B, C, 4 * H * W, ref);
                        tensor_free(&ty);
                        Buf bx = buf_in(x, n, dt, OFFS[o][0]), by = buf_out(4 * n, dt, OFFS[o][1]);
                        const int v = emu_upsample2x(bx.p, by.p, dt, B, H, W, C, CFGS[ci]);
                        seen[K_UPSAMPLE][d] |= 1u << v;
                        char label[128];
                        snprintf(label, sizeof label, "upsample2x %s %lldx%lldx%lldx%lld off%d/%d %s V%d",
                                 dtype_name(dt), (long long)B, (long long)H, (long long)W, (long long)C, OFFS[o][0],
                                 OFFS[o][1], CFGS[ci].name, v);
                        verdict(label, by, dt, ref, 4 * n, true);
                        free(bx.base);
                        free(by.base);
                        free(x);
                        free(xn);
                        free(ref);
                    }
}

static void test_concat(void) {
    const int64_t rowss[] = {1, 7, 64}, CC[][2] = {{1, 1}, {3, 5}, {8, 1}, {1, 8}, {77, 3},
                                                   {4, 6}, {8, 8}, {16, 24}, {320, 640}, {640, 320}};
    for (int d = 0; d < 3; d++)
        for (int64_t rows : rowss)
            for (const auto &cc : CC)
                for (int o = 0; o < NOFFS; o++)
                    for (int ci = 0; ci < 3; ci++) {
                        const DType dt = DTS[d];
                        const int64_t Ca = cc[0], Cb = cc[1], Ct = Ca + Cb;
                        float *a = rnd(rows * Ca, 3.0f, dt), *b = rnd(rows * Cb, 3.0f, dt);
                        float *an = (float *)xmalloc((size_t)(rows * Ca) * 4),
                              *bn = (float *)xmalloc((size_t)(rows * Cb) * 4);
                        float *ref = (float *)xmalloc((size_t)(rows * Ct) * 4);
                        /* rows as the pixels of one NCHW image for the CPU reference */
                        op_nlc_to_nchw(a, 1, Ca, rows, an);
                        op_nlc_to_nchw(b, 1, Cb, rows, bn);
                        const Tensor ta = {an, 4, {1, Ca, rows, 1}}, tb = {bn, 4, {1, Cb, rows, 1}};
                        Tensor ty = op_concat_channels(&ta, &tb);
                        op_nchw_to_nlc(ty.d, 1, Ct, rows, ref);
                        tensor_free(&ty);
                        Buf ba = buf_in(a, rows * Ca, dt, OFFS[o][0]), bb = buf_in(b, rows * Cb, dt, OFFS[o][1]),
                            by = buf_out(rows * Ct, dt, OFFS[o][2]);
                        const int v = emu_concat_last(ba.p, Ca, bb.p, Cb, by.p, dt, rows, CFGS[ci]);
                        seen[K_CONCAT][d] |= 1u << v;
                        char label[128];
                        snprintf(label, sizeof label, "concat %s rows%lld %lld+%lld off%d/%d/%d %s V%d",
                                 dtype_name(dt), (long long)rows, (long long)Ca, (long long)Cb, OFFS[o][0],
                                 OFFS[o][1], OFFS[o][2], CFGS[ci].name, v);
                        verdict(label, by, dt, ref, rows * Ct, true);
                        free(ba.base);
                        free(bb.base);
                        free(by.base);
                        free(a);
                        free(b);
                        free(an);
                        free(bn);
                        free(ref);
                    }
}

static void test_timestep(void) {
    const float ts[] = {999.0f, 0.0f, 500.5f, 1.0f};
    const int dims[] = {1, 2, 3, 7, 8, 77, 320, 1280};
    for (int d = 0; d < 3; d++)
        for (int64_t n = 1; n <= 4; n += 3)
            for (int dim : dims)
                for (int flip = 0; flip < 2; flip++)
                    for (int off = 0; off < 4; off++)
                        for (int ci = 0; ci < 3; ci++) {
                            const DType dt = DTS[d];
                            const float shift = (float)(off / 2); /* freq_shift 0 and 1 */
                            if ((float)(dim / 2) == shift) continue; /* a zero denominator: NaN in both */
                            float *ref = (float *)xmalloc((size_t)(n * dim) * 4);
                            op_timestep_embedding(ts, n, dim, flip, shift, ref);
                            Buf bo = buf_out(n * dim, dt, off % 2);
                            emu_timestep(ts, n, dim, flip, shift, bo.p, dt, CFGS[ci]);
                            char label[128];
                            snprintf(label, sizeof label, "timestep %s n%lld dim%d flip%d shift%g off%d %s",
                                     dtype_name(dt), (long long)n, dim, flip, (double)shift, off % 2, CFGS[ci].name);
                            /* fp32 and the same libm as the reference: within a rounding of the output */
                            verdict(label, bo, dt, ref, n * dim, false);
                            free(bo.base);
                            free(ref);
                        }
}

/* ---------- group norm ----------
 * Both passes of cuk_group_norm: pass 1 is gn_stats_block run block by
 * block, each of its steps thread by thread (the barriers between steps are
 * the loop boundaries), on a GnSmem filled with NaN bytes first, so a step
 * that reads shared memory no earlier step wrote shows up as NaN; pass 2 is
 * k_gn_apply through emu_launch. Checked against a float64 GroupNorm: every
 * block's per-group partial sums, the statistics, y; x untouched out of
 * place; the counters back at 0. The order of blocks (and so which one is
 * the image's last, which adds up the statistics) and of threads within a
 * step is varied: y and the statistics must not change by a bit, which is
 * what a race between threads of a step or a sum whose order depends on
 * timing would break. */

/* One barrier-to-barrier step: f for every thread, in order or reversed. */
struct EmuStep {
    int nt;
    bool rev;
    template <typename F> void operator()(F f) const {
        for (int i = 0; i < nt; i++) f(rev ? nt - 1 - i : i);
    }
};

enum { GN_FORWARD, GN_REVERSED, GN_SHUFFLED }; /* block and thread orders */

/* The per-stream scratch of ops.cu's gn_scratch: grow-only, zero when it
 * grows, its counters at the start (gn_floats_at). */
struct EmuScratch {
    char *p = NULL;
    size_t cap = 0;
    int64_t ncount = 0;
    ~EmuScratch() { free(p); }
    char *get(int64_t B, size_t float_bytes) {
        if (!p || ncount < B || cap < gn_floats_at(ncount) + float_bytes) {
            const int64_t nc = B > ncount ? (B > 64 ? B : 64) : ncount;
            const size_t need = gn_floats_at(nc) + float_bytes;
            free(p);
            cap = 2 * cap > need ? 2 * cap : need;
            p = (char *)xcalloc(1, cap);
            ncount = nc;
        }
        return p;
    }
};

struct GnRun {
    GnShape sh;
    int v;
    const float *part, *stat; /* in the scratch */
    const unsigned *count;
};

/* cuk_group_norm as ops.cu runs it, on a device of `sms` multiprocessors;
 * vforce > 0 takes packs of that width instead of pick_vec's. */
static GnRun emu_group_norm(const void *x, const void *add, void *y, DType dt, int64_t B, int64_t HW, int64_t C, int G,
                            const void *gamma, const void *beta, float eps, int silu, int sms, int vforce, int order,
                            EmuScratch &scr) {
    GnRun r;
    r.v = vforce ? vforce : pick_vec(dt, C, x, y);
    r.sh = gn_shape(B, HW, C, G, r.v, sms);
    const GnShape &sh = r.sh;
    char *scratch = scr.get(B, gn_float_bytes(B, sh));
    const int64_t blocks = B * sh.nchunk;
    const int nt = gn_threads(sh);
    if (nt < 1 || nt > GN_THREADS || blocks > 0x7fffffffLL)
        emu_fault("group_norm: bad launch (blocks, threads)", (unsigned long long)blocks, (unsigned long long)nt);
    std::vector<int64_t> blk((size_t)blocks);
    for (int64_t i = 0; i < blocks; i++) blk[(size_t)i] = order == GN_REVERSED ? blocks - 1 - i : i;
    if (order == GN_SHUFFLED)
        for (int64_t i = blocks - 1; i > 0; i--)
            std::swap(blk[(size_t)i], blk[(size_t)(urand(0.0f, 1.0f) * (float)(i + 1)) % (size_t)(i + 1)]);
    GnSmem *sm = (GnSmem *)xmalloc(sizeof(GnSmem));
    DISPATCH_T(dt, DISPATCH_V(r.v, {
        constexpr int VG = VW * sizeof(T) > 16 ? 16 / (int)sizeof(T) : VW;
        const GnArgs<T> a = gn_args<T>(x, add, gamma, beta, y, (char *)scratch, scr.ncount, B, sh, eps, silu);
        const EmuStep step = {nt, order != GN_FORWARD};
        for (int64_t b : blk) {
            memset(sm, 0xFF, sizeof *sm);
            gn_stats_block<T, VG>(a, sh, b, *sm, step);
        }
        emu_launch(dim3((unsigned)blocks), dim3((unsigned)nt), k_gn_apply<T, VG>, a, sh);
        r.part = a.part;
        r.stat = a.stat;
        r.count = a.count;
    }));
    free(sm);
    return r;
}

struct GnCase {
    int64_t B, HW, C;
    int G, add, silu;
    float mean; /* of x: a mean far above the spread must not cost precision */
    const char *why;
};

/* x + add in float64, as the device sees them: [B, HW, C] and [B, C]. */
static double gn_v(const float *x, const float *add, int64_t C, int64_t b, int64_t i) {
    return (double)x[i] + (add ? (double)add[b * C + i % C] : 0.0);
}

static void test_group_norm(void) {
    static const GnCase cases[] = {
        {1, 1, 32, 32, 0, 0, 0.0f, "one pixel, one channel a group"},
        {2, 7, 8, 4, 1, 1, 0.0f, "2 channels a group, odd HW"},
        {2, 33, 96, 32, 1, 0, 0.0f, "3 channels a group"},
        {1, 99, 320, 32, 1, 1, 0.0f, "SDXL's 10 channels a group, odd HW"},
        {2, 257, 640, 32, 0, 1, 0.0f, "20 channels a group"},
        {1, 64, 32, 8, 0, 1, 100.0f, "mean >> std"},
        {1, 300, 320, 32, 1, 0, 50.0f, "mean >> std, SDXL width"},
        {1, 50, 1024, 1024, 1, 0, 0.0f, "more groups than threads: the last block in batches"},
        {1, 40, 2100, 20, 1, 0, 0.0f, "rows over rounds, a group across a round's end"},
        {1, 9, 4104, 2, 0, 1, 0.0f, "groups longer than a round"},
        {1, 5, 4104, 1, 1, 0, 0.0f, "one group over every round"},
        {2, 64, 2560, 32, 1, 1, 0.0f, "SDXL up-block concat width"},
        {1, 1024, 1280, 32, 0, 1, 0.0f, "SDXL 32x32"},
        {2, 4096, 320, 32, 1, 1, 0.0f, "SDXL 64x64"},
    };
    const float eps = 1e-6f;
    EmuScratch scr; /* one for every call, as on a stream: the counters must come back to 0 */
    for (const GnCase &c : cases)
        for (int d = 0; d < 3; d++)
            for (int off = 0; off < 2; off++) {
                const DType dt = DTS[d];
                const int64_t B = c.B, HW = c.HW, C = c.C, n = B * HW * C, cg = C / c.G;
                const bool small = n <= 300000;
                float *x = (float *)xmalloc((size_t)n * 4), *add = c.add ? rnd(B * C, 1.0f, dt) : NULL;
                for (int64_t i = 0; i < n; i++) x[i] = round_dt(c.mean + urand(-2.0f, 2.0f), dt);
                float *gamma = (float *)xmalloc((size_t)C * 4), *beta = rnd(C, 0.5f, dt);
                for (int64_t i = 0; i < C; i++) gamma[i] = round_dt(urand(0.5f, 1.5f), dt);

                /* float64 statistics and y */
                double *mean = (double *)xmalloc((size_t)(B * c.G) * 8),
                       *rstd = (double *)xmalloc((size_t)(B * c.G) * 8);
                float *ref = (float *)xmalloc((size_t)n * 4);
                for (int64_t b = 0; b < B; b++)
                    for (int g = 0; g < c.G; g++) {
                        double s = 0, q = 0;
                        for (int64_t p = 0; p < HW; p++)
                            for (int64_t ch = g * cg; ch < (g + 1) * cg; ch++)
                                s += gn_v(x, add, C, b, (b * HW + p) * C + ch);
                        const double m = s / (double)(HW * cg);
                        for (int64_t p = 0; p < HW; p++)
                            for (int64_t ch = g * cg; ch < (g + 1) * cg; ch++) {
                                const double e = gn_v(x, add, C, b, (b * HW + p) * C + ch) - m;
                                q += e * e;
                            }
                        mean[b * c.G + g] = m;
                        rstd[b * c.G + g] = 1.0 / sqrt(q / (double)(HW * cg) + eps);
                    }
                for (int64_t i = 0; i < n; i++) {
                    const int64_t b = i / (HW * C), ch = i % C, g = ch / cg;
                    double o = (gn_v(x, add, C, b, i) - mean[b * c.G + g]) * rstd[b * c.G + g] * gamma[ch] + beta[ch];
                    if (c.silu) o = o / (1.0 + exp(-o));
                    ref[i] = (float)o;
                }

                Buf bx = buf_in(x, n, dt, off), bg = buf_in(gamma, C, dt, 0), bb = buf_in(beta, C, dt, 0);
                Buf ba = add ? buf_in(add, B * C, dt, 0) : Buf{};
                const void *ap = add ? ba.p : NULL;
                std::vector<unsigned char> x0((unsigned char *)bx.p, (unsigned char *)bx.p + bx.bytes);
                std::vector<unsigned char> y0, st0;

                /* one run against the float64 GroupNorm; keeps its y and statistics in y0, st0 when asked */
                auto run = [&](int sms, int vforce, int order, const char *what, bool keep) {
                    Buf by = buf_out(n, dt, off);
                    emu_faults = 0;
                    const GnRun r = emu_group_norm(bx.p, ap, by.p, dt, B, HW, C, c.G, bg.p, bb.p, eps, c.silu, sms,
                                                   vforce, order, scr);
                    seen[K_GN][d] |= 1u << r.v;
                    char label[200];
                    snprintf(label, sizeof label, "group_norm %s B%lld HW%lld C%lld G%d%s%s off%d %s V%d chunks%d (%s)",
                             dtype_name(dt), (long long)B, (long long)HW, (long long)C, c.G, add ? " add" : "",
                             c.silu ? " silu" : "", off, what, r.v, r.sh.nchunk, c.why);
                    const GnShape &sh = r.sh;
                    /* every block's partial sums of every group */
                    int64_t bad_part = 0;
                    char why_part[160] = "";
                    for (int64_t b = 0; b < B; b++)
                        for (int g = 0; g < c.G; g++) {
                            const float K =
                                get(bx.p, b * HW * C + g * cg, dt) + (add ? get(ap, b * C + g * cg, dt) : 0.0f);
                            for (int k = 0; k < sh.nchunk; k++) {
                                double s1 = 0, s2 = 0, mag = 0;
                                for (int64_t p = HW * k / sh.nchunk; p < HW * (k + 1) / sh.nchunk; p++)
                                    for (int64_t ch = g * cg; ch < (g + 1) * cg; ch++) {
                                        const double e = gn_v(x, add, C, b, (b * HW + p) * C + ch) - (double)K;
                                        s1 += e;
                                        s2 += e * e;
                                        mag += fabs(e);
                                    }
                                const float *pp = r.part + ((b * c.G + g) * sh.nchunk + k) * 2;
                                if (!(fabs(pp[0] - s1) <= 1e-5 * mag + 1e-30) ||
                                    !(fabs(pp[1] - s2) <= 1e-5 * s2 + 1e-30))
                                    if (bad_part++ == 0)
                                        snprintf(why_part, sizeof why_part,
                                                 "b%lld g%d chunk %d: (%.9g, %.9g) want (%.9g, %.9g)", (long long)b, g,
                                                 k, (double)pp[0], (double)pp[1], s1, s2);
                            }
                        }
                    CHECK_MSG(bad_part == 0, "%s: %lld partial sums wrong, first %s", label, (long long)bad_part,
                              why_part);
                    int64_t bad_stat = 0;
                    for (int64_t i = 0; i < B * c.G; i++) {
                        const double m = mean[i], sd = 1.0 / rstd[i];
                        if (!(fabs(r.stat[2 * i] - m) <= 2e-6 * (fabs(m) + sd)) ||
                            !(fabs(r.stat[2 * i + 1] / rstd[i] - 1.0) <= 2e-5))
                            if (bad_stat++ == 0)
                                fprintf(stderr, "%s: stat %lld: mean %.9g rstd %.9g, want %.9g %.9g\n", label,
                                        (long long)i, (double)r.stat[2 * i], (double)r.stat[2 * i + 1], m, rstd[i]);
                    }
                    CHECK_MSG(bad_stat == 0, "%s: %lld statistics wrong", label, (long long)bad_stat);
                    bool zero = true;
                    for (int64_t b = 0; b < B; b++) zero = zero && r.count[b] == 0;
                    CHECK_MSG(zero, "%s: the counters are not back at 0", label);
                    CHECK_MSG(!memcmp(x0.data(), bx.p, bx.bytes), "%s: x changed out of place", label);
                    verdict(label, by, dt, ref, n, false);
                    const unsigned char *yp = (const unsigned char *)by.p, *sp = (const unsigned char *)r.stat;
                    if (keep) {
                        y0.assign(yp, yp + by.bytes);
                        st0.assign(sp, sp + gn_stat_floats(B, sh) * sizeof(float));
                    } else if (vforce == 0 && sms == 132) { /* the same shape: the same bits */
                        CHECK_MSG(!memcmp(y0.data(), yp, by.bytes) && !memcmp(st0.data(), sp, st0.size()),
                                  "%s: y or the statistics differ from the first run's", label);
                    }
                    free(by.base);
                };
                run(132, 0, GN_FORWARD, "grid@132sm", true);
                run(132, 0, GN_REVERSED, "grid@132sm, blocks and threads reversed", false);
                if (small) {
                    run(132, 0, GN_SHUFFLED, "grid@132sm, blocks shuffled", false);
                    run(1, 0, GN_FORWARD, "grid@1sm", false);
                    run(3, 0, GN_SHUFFLED, "grid@3sm, blocks shuffled", false);
                    /* every narrower pack the row and the pointers allow */
                    for (int w = pick_vec(dt, C, bx.p) / 2; w >= 1; w /= 2) {
                        char what[48];
                        snprintf(what, sizeof what, "grid@132sm, packs of %d", w);
                        run(132, w, GN_FORWARD, what, false);
                    }
                }
                { /* in place (y == x): the out-of-place run's bits */
                    Buf bi = buf_out(n, dt, off, x);
                    emu_faults = 0;
                    const GnRun r = emu_group_norm(bi.p, ap, bi.p, dt, B, HW, C, c.G, bg.p, bb.p, eps, c.silu, 132, 0,
                                                   GN_SHUFFLED, scr);
                    char label[160];
                    snprintf(label, sizeof label, "group_norm %s B%lld HW%lld C%lld G%d off%d in place V%d",
                             dtype_name(dt), (long long)B, (long long)HW, (long long)C, c.G, off, r.v);
                    CHECK_MSG(guards_ok(bi) && emu_faults == 0 && !memcmp(y0.data(), bi.p, bi.bytes),
                              "%s: differs from out of place%s%s", label, emu_faults ? ", fault: " : "",
                              emu_faults ? emu_fault_msg : "");
                    emu_faults = 0;
                    ncases++;
                    free(bi.base);
                }
                free(bx.base);
                free(bg.base);
                free(bb.base);
                if (add) free(ba.base);
                free(x);
                free(add);
                free(gamma);
                free(beta);
                free(mean);
                free(rstd);
                free(ref);
            }
    /* the shape's arithmetic: SDXL's 320 channels in fp16 on an H200 */
    const GnShape s = gn_shape(2, 16384, 320, 32, 8, 132);
    CHECK_MSG(s.cpr == 40 && s.lanes == 40 && s.rstep == 12 && s.rounds == 1 && s.nchunk == 132 && s.tpg == 15,
              "gn_shape(2, 16384, 320, 32, 8, 132): cpr %d lanes %d rstep %d rounds %d nchunk %d tpg %d", s.cpr,
              s.lanes, s.rstep, s.rounds, s.nchunk, s.tpg);
}

/* Every pack width each kernel can take in each dtype ran at least once. */
static void test_coverage(void) {
    for (int k = 0; k < K_N; k++)
        for (int d = 0; d < 3; d++) {
            const int es = (int)dtype_size(DTS[d]);
            unsigned want = 0;
            for (int v = 1; v * es <= 16; v *= 2) want |= 1u << v;
            if (k == K_CONVERT) want = 1u << 1 | 1u << 4;
            CHECK_MSG(seen[k][d] == want, "%s %s: pack widths run 0x%x, want 0x%x", KNAME[k], dtype_name(DTS[d]),
                      seen[k][d], want);
        }
}

/* The checks can fail: a pack width the launcher would not pick is caught,
 * both as wrong elements (a tail left out) and as a misaligned access. */
static void test_expected_failures(void) {
    char why[160];
    { /* geglu with packs of 4 over rows of 9: element 8 of every row is never written */
        const int64_t M = 3, I = 9;
        float *h = rnd(M * 2 * I, 3.0f, DTYPE_F32), ref[M * I];
        op_geglu(h, M, I, ref);
        Buf bh = buf_in(h, M * 2 * I, DTYPE_F32, 0), bo = buf_out(M * I, DTYPE_F32, 0);
        emu_geglu(bh.p, bo.p, DTYPE_F32, M, I, CFGS[0], 4);
        const int64_t bad = misses(bo.p, DTYPE_F32, ref, M * I, false, why, sizeof why);
        CHECK_MSG(bad == M, "geglu V4 on I=9: %lld wrong elements, want %lld (one a row)", (long long)bad,
                  (long long)M);
        CHECK_MSG(pick_vec(DTYPE_F32, I, bh.p, bo.p) == 1, "pick_vec would take packs over rows of 9");
        free(bh.base);
        free(bo.base);
        free(h);
    }
    { /* add with packs of 4 floats on a y one float off 16-byte alignment */
        const int64_t n = 64;
        float *x = rnd(n, 1.0f, DTYPE_F32), *y = rnd(n, 1.0f, DTYPE_F32);
        Buf by = buf_out(n, DTYPE_F32, 1, y), bx = buf_in(x, n, DTYPE_F32, 0);
        emu_faults = 0;
        emu_add(by.p, bx.p, DTYPE_F32, n, 1.0f, CFGS[0], 4);
        CHECK_MSG(emu_faults > 0, "a misaligned pack was not reported");
        emu_faults = 0;
        free(by.base);
        free(bx.base);
        free(x);
        free(y);
    }
    { /* a launch the device refuses (more than 1024 threads a block) */
        Buf by = buf_out(1, DTYPE_F32, 0);
        emu_launch(dim3(1), dim3(2048), k_map<float, 1, SiluF>, (float *)by.p, (int64_t)1, SiluF{});
        CHECK_MSG(emu_faults > 0, "a block of 2048 threads was not refused");
        emu_faults = 0;
        free(by.base);
    }
}

int main(void) {
    test_map_add();
    test_convert();
    test_geglu();
    test_bias_res();
    test_upsample();
    test_concat();
    test_timestep();
    test_group_norm();
    test_coverage();
    test_expected_failures();
    printf("test_cuda_emu: %d kernel runs on the CPU (3 grids each: 132 SMs, 1 SM, 3 x 32)\n", ncases);
    { /* the element-wise launchers pack wherever the pointers allow, at any length */
        alignas(16) float f[9];
        alignas(16) uint16_t h[9];
        CHECK_MSG(pick_vec(DTYPE_F32, 0, f) == 4 && pick_vec(DTYPE_F16, 0, h, h) == 8 && pick_vec(DTYPE_F32, 0, f + 1) == 1 &&
                      pick_vec(DTYPE_BF16, 0, h + 2) == 2,
                  "pick_vec(dt, 0, ...): %d %d %d %d", pick_vec(DTYPE_F32, 0, f), pick_vec(DTYPE_F16, 0, h, h),
                  pick_vec(DTYPE_F32, 0, f + 1), pick_vec(DTYPE_BF16, 0, h + 2));
    }
    TEST_MAIN_END("test_cuda_emu");
}
