/* test_fastops: every op of the fast CPU engine against the reference engine,
 * through the Backend interface both implement (so the NHWC layout, the
 * residual fusion and the activation pool are tested with the arithmetic),
 * on random data and ragged shapes: channel counts off every vector width,
 * odd spatial sizes, 77-token cross-attention, head dims 8 to 160, query and
 * key counts off the attention kernel's blocks. fp32 is held to 2e-6 relative
 * L2 (5e-6 for long sums), bf16 (where the CPU has it) to 1e-2. */
#include "test.h"
#include "backend.h"
#include "err.h"
#include "rng.h"
#include "weights.h"
#include <stdint.h>

static double rel_l2(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* A Weights of named random tensors, sorted as weights_find wants. */
enum { MAXW = 32 };
static Weights W;
static uint64_t seed = 1;

static void wadd(const char *name, int64_t n, float mean, float std) {
    if (!W.names) {
        W.names = calloc(MAXW, sizeof(char *));
        W.data = calloc(MAXW, sizeof(float *));
        W.numel = calloc(MAXW, sizeof(int64_t));
    }
    W.names[W.n] = strdup(name);
    W.data[W.n] = malloc((size_t)n * sizeof(float));
    W.numel[W.n] = n;
    Rng r = rng_for(seed, name);
    rng_normal(&r, W.data[W.n], n, mean, std);
    W.n++;
}

static void wsort(void) { /* names with their data, together */
    for (int i = 0; i < W.n; i++)
        for (int j = i + 1; j < W.n; j++)
            if (strcmp(W.names[j], W.names[i]) < 0) {
                char *tn = W.names[i]; W.names[i] = W.names[j]; W.names[j] = tn;
                float *td = W.data[i]; W.data[i] = W.data[j]; W.data[j] = td;
                int64_t tk = W.numel[i]; W.numel[i] = W.numel[j]; W.numel[j] = tk;
            }
}

static Tensor rand_tensor(int ndim, const int64_t *shape, const char *tag, float std) {
    Tensor t = tensor_new(ndim, shape[0], ndim > 1 ? shape[1] : 0, ndim > 2 ? shape[2] : 0, ndim > 3 ? shape[3] : 0);
    Rng r = rng_for(seed++, tag);
    rng_normal(&r, t.d, tensor_numel(&t), 0.0f, std);
    return t;
}

typedef struct {
    Backend *be;
    const char *label;
} Eng;

static Backend refb;
static Eng engines[2];
static int n_eng;
static double tol_of(const Eng *e, double fp32) { return strstr(e->label, "bf16") ? 1e-2 : fp32; }

/* Compares act y of engine e with the reference's r (both released). */
static void compare(const Eng *e, Act *y, Act *r, double fp32_tol, const char *what) {
    Tensor ty, tr;
    int oy, orr;
    e->be->to_host(e->be, y, &ty, &oy);
    refb.to_host(&refb, r, &tr, &orr);
    int same_shape = ty.ndim == tr.ndim && !memcmp(ty.shape, tr.shape, sizeof ty.shape);
    CHECK_MSG(same_shape, "%s %s: shape differs", e->label, what);
    double err = same_shape ? rel_l2(ty.d, tr.d, tensor_numel(&tr)) : 1;
    double tol = tol_of(e, fp32_tol);
    CHECK_MSG(err <= tol, "%s %s: relative L2 %.3g > %.3g", e->label, what, err, tol);
    if (oy) tensor_free(&ty);
    if (orr) tensor_free(&tr);
    e->be->release(e->be, y);
    refb.release(&refb, r);
}

static void test_linear(const Eng *e, const char *name, int64_t rows, int64_t K, int64_t N, int bias, int res3) {
    char what[96];
    snprintf(what, sizeof what, "%s %lldx%lld->%lld%s%s", name, (long long)rows, (long long)K, (long long)N,
             bias ? " +bias" : "", res3 ? " +res" : "");
    int64_t xs[4] = {1, rows, K, 0}, ys[4] = {1, rows, N, 0};
    Tensor x = rand_tensor(3, xs, what, 1.0f), rs = rand_tensor(3, ys, "res", 1.0f);
    Act xa = e->be->from_host(e->be, &x), xr = refb.from_host(&refb, &x);
    Act ra = e->be->from_host(e->be, &rs), rr = refb.from_host(&refb, &rs);
    Act y = e->be->linear(e->be, name, &xa, N, bias, res3 ? &ra : NULL);
    Act r = refb.linear(&refb, name, &xr, N, bias, res3 ? &rr : NULL);
    compare(e, &y, &r, K > 512 ? 5e-6 : 2e-6, what);
    e->be->release(e->be, &xa); refb.release(&refb, &xr);
    e->be->release(e->be, &ra); refb.release(&refb, &rr);
    tensor_free(&x); tensor_free(&rs);
}

/* The fused projection + GEGLU against the reference's linear then geglu. */
static void test_linear_geglu(const Eng *e, int64_t rows, int64_t K, int64_t I) {
    char what[96];
    snprintf(what, sizeof what, "linear_geglu %lldx%lld->%lld", (long long)rows, (long long)K, (long long)I);
    int64_t xs[4] = {2, rows, K, 0};
    Tensor x = rand_tensor(3, xs, what, 1.0f);
    Act xa = e->be->from_host(e->be, &x), xr = refb.from_host(&refb, &x);
    Act y = e->be->linear_geglu(e->be, "gg", &xa, I);
    Act h = refb.linear(&refb, "gg", &xr, 2 * I, 1, NULL), r = refb.geglu(&refb, &h);
    compare(e, &y, &r, 2e-6, what);
    e->be->release(e->be, &xa); refb.release(&refb, &xr); refb.release(&refb, &h);
    tensor_free(&x);
}

static void test_conv(const Eng *e, int64_t B, int64_t Cin, int64_t H, int64_t Wd, int cout, int k, int stride, int res) {
    char what[96];
    snprintf(what, sizeof what, "conv %lldx%lldx%lldx%lld->%d k%d s%d%s", (long long)B, (long long)Cin, (long long)H,
             (long long)Wd, cout, k, stride, res ? " +res" : "");
    int64_t xs[4] = {B, Cin, H, Wd}, os[4] = {B, cout, (H + 2 * ((k - 1) / 2) - k) / stride + 1, (Wd + 2 * ((k - 1) / 2) - k) / stride + 1};
    Tensor x = rand_tensor(4, xs, what, 1.0f), rs = rand_tensor(4, os, "cres", 1.0f);
    Act xa = e->be->from_host(e->be, &x), xr = refb.from_host(&refb, &x);
    Act ra = e->be->from_host(e->be, &rs), rr = refb.from_host(&refb, &rs);
    const char *name = k == 3 ? "conv3" : "conv1";
    Act y = e->be->conv(e->be, name, &xa, cout, k, stride, res ? &ra : NULL);
    Act r = refb.conv(&refb, name, &xr, cout, k, stride, res ? &rr : NULL);
    compare(e, &y, &r, 5e-6, what);
    e->be->release(e->be, &xa); refb.release(&refb, &xr);
    e->be->release(e->be, &ra); refb.release(&refb, &rr);
    tensor_free(&x); tensor_free(&rs);
}

static void test_group_norm(const Eng *e, int64_t B, int64_t C, int64_t H, int64_t Wd, int groups, int silu, int add) {
    char what[96];
    snprintf(what, sizeof what, "group_norm %lldx%lldx%lldx%lld G%d%s%s", (long long)B, (long long)C, (long long)H,
             (long long)Wd, groups, silu ? " +silu" : "", add ? " +add" : "");
    int64_t xs[4] = {B, C, H, Wd}, as[4] = {B, C, 0, 0};
    Tensor x = rand_tensor(4, xs, what, 2.0f), t = rand_tensor(2, as, "temb", 1.0f);
    for (int64_t i = 0; i < tensor_numel(&x); i++) x.d[i] += 3.0f; /* an offset the two-pass variance must survive */
    Act xa = e->be->from_host(e->be, &x), xr = refb.from_host(&refb, &x);
    Act ta = e->be->from_host(e->be, &t), tr = refb.from_host(&refb, &t);
    e->be->group_norm(e->be, "gn", &xa, groups, 1e-5f, silu, add ? &ta : NULL);
    refb.group_norm(&refb, "gn", &xr, groups, 1e-5f, silu, add ? &tr : NULL);
    compare(e, &xa, &xr, 2e-6, what);
    e->be->release(e->be, &ta); refb.release(&refb, &tr);
    tensor_free(&x); tensor_free(&t);
}

static void test_attention(const Eng *e, int64_t B, int64_t Nq, int64_t Nk, int64_t C, int heads) {
    char what[96];
    snprintf(what, sizeof what, "attention B%lld Nq%lld Nk%lld C%lld heads %d", (long long)B, (long long)Nq,
             (long long)Nk, (long long)C, heads);
    int64_t qs[4] = {B, Nq, C, 0}, ks[4] = {B, Nk, C, 0};
    Tensor q = rand_tensor(3, qs, "q", 1.0f), k = rand_tensor(3, ks, "k", 1.0f), v = rand_tensor(3, ks, "v", 1.0f);
    Act qa = e->be->from_host(e->be, &q), ka = e->be->from_host(e->be, &k), va = e->be->from_host(e->be, &v);
    Act qr = refb.from_host(&refb, &q), kr = refb.from_host(&refb, &k), vr = refb.from_host(&refb, &v);
    Act y = e->be->attention(e->be, &qa, &ka, &va, heads);
    Act r = refb.attention(&refb, &qr, &kr, &vr, heads);
    compare(e, &y, &r, 2e-6, what);
    Act *all[6] = {&qa, &ka, &va, &qr, &kr, &vr};
    for (int i = 0; i < 6; i++) (i < 3 ? e->be : &refb)->release(i < 3 ? e->be : &refb, all[i]);
    tensor_free(&q); tensor_free(&k); tensor_free(&v);
}

/* The small ops, on one ragged map and its sequence. */
static void test_small(const Eng *e, int64_t B, int64_t C, int64_t H, int64_t Wd) {
    int64_t xs[4] = {B, C, H, Wd}, bs[4] = {B, C + 3, H, Wd}, hs[4] = {B, H * Wd, 2 * C, 0}, rs[4] = {B, 2 * C, 0, 0};
    Tensor x = rand_tensor(4, xs, "sx", 3.0f), x2 = rand_tensor(4, bs, "sx2", 1.0f), h = rand_tensor(3, hs, "sh", 3.0f);
    Tensor r2 = rand_tensor(2, rs, "r2", 1.0f);
    Act a, r;
    /* layer_norm over a sequence */
    a = e->be->from_host(e->be, &h); r = refb.from_host(&refb, &h);
    Act la = e->be->layer_norm(e->be, "ln", &a, 1e-5f), lr = refb.layer_norm(&refb, "ln", &r, 1e-5f);
    compare(e, &la, &lr, 2e-6, "layer_norm");
    /* geglu */
    Act ga = e->be->geglu(e->be, &a), gr = refb.geglu(&refb, &r);
    compare(e, &ga, &gr, 2e-6, "geglu");
    e->be->release(e->be, &a); refb.release(&refb, &r);
    /* silu, affine, add with a divisor */
    a = e->be->from_host(e->be, &x); r = refb.from_host(&refb, &x);
    Act ba = e->be->copy(e->be, &a), br = refb.copy(&refb, &r);
    e->be->silu(e->be, &a); refb.silu(&refb, &r);
    e->be->affine(e->be, &a, 2.0f, -1.0f); refb.affine(&refb, &r, 2.0f, -1.0f);
    e->be->add(e->be, &a, &ba, 1.5f); refb.add(&refb, &r, &br, 1.5f);
    e->be->release(e->be, &ba); refb.release(&refb, &br);
    /* upsample, then concat along channels, then to_seq/to_map round trip */
    Act ua = e->be->upsample2x(e->be, &a), ur = refb.upsample2x(&refb, &r);
    compare(e, &ua, &ur, 2e-6, "upsample2x");
    Act ca2 = e->be->from_host(e->be, &x2), cr2 = refb.from_host(&refb, &x2);
    Act ca = e->be->concat(e->be, &a, &ca2), cr = refb.concat(&refb, &r, &cr2);
    e->be->release(e->be, &ca2); refb.release(&refb, &cr2);
    Act sa = e->be->to_seq(e->be, &ca), sr = refb.to_seq(&refb, &cr);
    compare(e, &sa, &sr, 2e-6, "concat + to_seq");
    sa = e->be->to_seq(e->be, &a); sr = refb.to_seq(&refb, &r);
    Act ma = e->be->to_map(e->be, &sa, H, Wd), mr = refb.to_map(&refb, &sr, H, Wd);
    compare(e, &ma, &mr, 2e-6, "silu, affine, add /1.5, to_seq + to_map");
    /* 2-D concat (rows) */
    Act ra2 = e->be->from_host(e->be, &r2), rr2 = refb.from_host(&refb, &r2);
    Act ka = e->be->concat(e->be, &ra2, &ra2), kr = refb.concat(&refb, &rr2, &rr2);
    compare(e, &ka, &kr, 0, "concat rows");
    e->be->release(e->be, &ra2); refb.release(&refb, &rr2);
    /* timestep embedding */
    float ts[3] = {0.0f, 17.5f, 999.0f};
    Act ta = e->be->timestep_embedding(e->be, ts, 3, 320, 1, 0.0f), tr = refb.timestep_embedding(&refb, ts, 3, 320, 1, 0.0f);
    compare(e, &ta, &tr, 0, "timestep_embedding");
    tensor_free(&x); tensor_free(&x2); tensor_free(&h); tensor_free(&r2);
}

int main(void) {
    if (!cpu_fast_built()) TEST_SKIP("test_fastops", "fast engine not built (DNNL=0)");
    const int64_t K = 1280, N = 1283, K2 = 77, N2 = 333, CIN = 67, COUT = 45, CG = 2 * 160;
    wadd("lin.weight", N * K, 0.0f, 0.03f);
    wadd("lin.bias", N, 0.0f, 1.0f);
    wadd("lin2.weight", N2 * K2, 0.0f, 0.1f);
    wadd("lin2.bias", N2, 0.0f, 1.0f);
    wadd("conv3.weight", (int64_t)COUT * CIN * 9, 0.0f, 0.05f);
    wadd("conv3.bias", COUT, 0.0f, 1.0f);
    wadd("conv1.weight", (int64_t)COUT * CIN, 0.0f, 0.1f);
    wadd("conv1.bias", COUT, 0.0f, 1.0f);
    wadd("gn.weight", 1280, 1.0f, 0.2f);
    wadd("gn.bias", 1280, 0.0f, 0.2f);
    wadd("gg.weight", 2 * 333 * 160, 0.0f, 0.08f);
    wadd("gg.bias", 2 * 333, 0.0f, 0.5f);
    wadd("ln.weight", CG, 1.0f, 0.2f);
    wadd("ln.bias", CG, 0.0f, 0.2f);
    wsort();
    refb = backend_cpu(&W);
    engines[n_eng++] = (Eng){backend_fast(&W, DTYPE_F32), "fast fp32"};
    if (cpu_bf16_native()) engines[n_eng++] = (Eng){backend_fast(&W, DTYPE_BF16), "fast bf16"};
    else printf("test_fastops: bf16 skipped: this CPU has neither AVX512-BF16 nor AMX\n");
    for (int i = 0; i < n_eng; i++) {
        const Eng *e = &engines[i];
        /* linear: small and big rows, the sequence residual, bias or not, K and N off the vector widths */
        int64_t rows[5] = {1, 2, 77, 333, 1024};
        for (int r = 0; r < 5; r++) {
            test_linear(e, "lin", rows[r], K, N, r != 2, r >= 3);
            test_linear(e, "lin2", rows[r], K2, N2, r != 1, r % 2);
        }
        test_linear(e, "lin", 77, K, N, 1, 1); /* again: the cached primitive */
        test_linear_geglu(e, 77, 160, 333);
        test_linear_geglu(e, 1, 160, 333);
        /* conv: 3x3 stride 1 and 2, 1x1, odd sizes, batch 2, with and without the residual */
        test_conv(e, 1, CIN, 9, 13, COUT, 3, 1, 0);
        test_conv(e, 2, CIN, 16, 16, COUT, 3, 1, 1);
        test_conv(e, 2, CIN, 17, 15, COUT, 3, 2, 0);
        test_conv(e, 2, CIN, 11, 7, COUT, 1, 1, 1);
        test_conv(e, 1, CIN, 1, 1, COUT, 3, 1, 0);
        /* group norm: 32 groups of 10/20/40 channels, a 4-channel group, odd pixels, temb add, silu */
        test_group_norm(e, 1, 320, 16, 16, 32, 1, 0);
        test_group_norm(e, 2, 640, 7, 9, 32, 1, 1);
        test_group_norm(e, 2, 1280, 4, 4, 32, 0, 1);
        test_group_norm(e, 1, 128, 3, 5, 32, 1, 1);
        test_group_norm(e, 1, 96, 1, 1, 32, 0, 0);
        /* attention: self at 1024 and ragged token counts, cross with 77 tokens, head dims 8..160 */
        test_attention(e, 1, 1024, 1024, 640, 10);
        test_attention(e, 2, 333, 333, 320, 5);
        test_attention(e, 2, 333, 77, 640, 10);
        test_attention(e, 1, 65, 77, 1280, 8);   /* head dim 160 */
        test_attention(e, 1, 31, 129, 40, 5);    /* head dim 8 */
        test_attention(e, 1, 1, 1, 24, 1);
        test_attention(e, 1, 100, 300, 120, 3);  /* head dim 40 (SD 1.5's) */
        test_attention(e, 2, 70, 200, 1280, 10); /* head dim 128: P.V in two 64-wide tiles */
        test_small(e, 2, 160, 7, 5);
        test_small(e, 1, 37, 16, 16);
    }
    weights_free(&W);
    TEST_MAIN_END("test_fastops");
}
