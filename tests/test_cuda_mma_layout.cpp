/* test_cuda_mma_layout: the fragment layouts of kernels/cuda/attn_mma.cu,
 * checked on the host. One warp is emulated: ldmatrix and mma.m16n8k16 are
 * written here from the PTX ISA's tables ([LDSM] and [MMA] in attn_mma.h),
 * independently of attn_mma.h, and fed with the shared-memory addresses and
 * register usage the kernel takes from attn_mma.h. Checked: the header's
 * mappings against the PTX tables; the swizzle (a bijection, and no bank
 * conflicts for ldmatrix, cp.async and the output staging); S = Q K^T and
 * O = P V landing where the kernel expects them; P's C fragments reused as A;
 * and the whole per-CTA algorithm (cp.async tiles with zero fill, online
 * softmax over 64-key tiles, masking, the epilogue with its row guard) against
 * a double-precision attention, fp16 and bf16, dh 64 and 128, Nk from 1 to 200
 * (77: SDXL cross-attention). What it cannot see: races, barriers, the PTX
 * strings themselves and device arithmetic; those need the GPU test.
 * Host C++ (no CUDA runtime); build by hand, see the command in the report:
 *   g++ -std=c++17 -O2 -Wall -Wextra -Icore -Ikernels/cuda -Itests -isystem /usr/local/cuda/include \
 *       tests/test_cuda_mma_layout.cpp -o build-mma/tests/test_cuda_mma_layout -lm */
#include "attn_mma.h"

#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <vector>

using namespace attn_mma;

/* ---------- 16-bit element types ---------- */

template <typename T> struct El;
template <> struct El<__half> {
    static uint16_t bits(float f) {
        const __half_raw r = __float2half_rn(f);
        return r.x;
    }
    static float val(uint16_t u) {
        __half_raw r;
        r.x = u;
        return __half2float(__half(r));
    }
    static const char *name() { return "fp16"; }
    static constexpr double tol = 1e-3, nmse = 1e-6; /* P and O rounded to 11 bits */
};
template <> struct El<__nv_bfloat16> {
    static uint16_t bits(float f) {
        const __nv_bfloat16_raw r = __float2bfloat16_rn(f);
        return r.x;
    }
    static float val(uint16_t u) {
        __nv_bfloat16_raw r;
        r.x = u;
        return __bfloat162float(__nv_bfloat16(r));
    }
    static const char *name() { return "bf16"; }
    static constexpr double tol = 8e-3, nmse = 4e-5; /* 8 bits */
};

static uint64_t rs = 0x2545F4914F6CDD1Dull;
static float urand(float lo, float hi) { /* xorshift64* */
    rs ^= rs >> 12;
    rs ^= rs << 25;
    rs ^= rs >> 27;
    const uint64_t x = rs * 0x2545F4914F6CDD1Dull;
    return lo + (hi - lo) * (float)((x >> 40) * (1.0 / 16777216.0));
}

/* ---------- the PTX ISA, as written there (not attn_mma.h) ---------- */

/* [MMA] multiplicand A (.f16/.bf16): element a_i, i = 0..7, lives in register i/2, half i%2 */
static void ptx_a_pos(int lane, int i, int *row, int *col) {
    const int groupID = lane >> 2, threadID_in_group = lane % 4;
    *row = (i < 2 || (4 <= i && i < 6)) ? groupID : groupID + 8;
    *col = i < 4 ? threadID_in_group * 2 + (i & 0x1) : threadID_in_group * 2 + (i & 0x1) + 8;
}
/* [MMA] multiplicand B: b_i, i = 0..3, register i/2, half i%2; row = k, col = n */
static void ptx_b_pos(int lane, int i, int *row, int *col) {
    const int groupID = lane >> 2, threadID_in_group = lane % 4;
    *row = i < 2 ? threadID_in_group * 2 + (i & 0x1) : threadID_in_group * 2 + (i & 0x1) + 8;
    *col = groupID;
}
/* [MMA] accumulator C/D (.f32): c_i, i = 0..3 */
static void ptx_c_pos(int lane, int i, int *row, int *col) {
    const int groupID = lane >> 2, threadID_in_group = lane % 4;
    *row = i < 2 ? groupID : groupID + 8;
    *col = threadID_in_group * 2 + (i & 0x1);
}
static uint16_t half_of(uint32_t reg, int h) { return (uint16_t)(h ? reg >> 16 : reg & 0xffff); }

static int ldsm_faults;
static int verbose; /* -v: print each attention case's errors */
/* [LDSM] ldmatrix.sync.aligned.m8n8.x4{.trans}.b16 over a shared-memory image
 * sm (bytes): lanes 8m..8m+7 give the row addresses of matrix m; without
 * .trans lane l's register m gets row l/4, elements 2(l%4) and 2(l%4)+1 (the
 * four lanes of a group read a row's 16 bytes); with .trans the matrix is
 * read column-major: lane l gets rows 2(l%4), 2(l%4)+1 of column l/4. */
static void emu_ldsm_x4(const std::vector<uint16_t> &sm, const uint32_t addr[32], bool trans, uint32_t out[32][4]) {
    for (int a = 0; a < 32; a++)
        if (addr[a] % 16 || addr[a] / 2 + 8 > sm.size()) ldsm_faults++; /* rows must be 16-byte aligned, inside */
    for (int m = 0; m < 4; m++)
        for (int l = 0; l < 32; l++) {
            uint16_t e[2];
            for (int h = 0; h < 2; h++) {
                const uint32_t row_addr = trans ? addr[8 * m + 2 * (l % 4) + h] : addr[8 * m + l / 4];
                const uint32_t el = trans ? row_addr / 2 + l / 4 : row_addr / 2 + 2 * (l % 4) + h;
                e[h] = el < sm.size() ? sm[el] : 0;
            }
            out[l][m] = (uint32_t)e[0] | (uint32_t)e[1] << 16;
        }
}

/* [MMA] mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.f32: D = A B + C
 * with the fragments gathered into matrices through the tables above; the
 * products summed in double and rounded to float once per instruction. */
template <typename T> static void emu_mma(float d[32][4], const uint32_t a[32][4], const uint32_t b[32][2]) {
    float A[16][16], Bm[16][8];
    for (int l = 0; l < 32; l++) {
        for (int i = 0; i < 8; i++) {
            int r, c;
            ptx_a_pos(l, i, &r, &c);
            A[r][c] = El<T>::val(half_of(a[l][i / 2], i % 2));
        }
        for (int i = 0; i < 4; i++) {
            int r, c;
            ptx_b_pos(l, i, &r, &c);
            Bm[r][c] = El<T>::val(half_of(b[l][i / 2], i % 2));
        }
    }
    for (int l = 0; l < 32; l++)
        for (int i = 0; i < 4; i++) {
            int r, c;
            ptx_c_pos(l, i, &r, &c);
            double acc = d[l][i];
            for (int kk = 0; kk < 16; kk++) acc += (double)A[r][kk] * Bm[kk][c];
            d[l][i] = (float)acc;
        }
}

/* A 16x16 matrix from 32 lanes' A fragments, through the PTX table */
template <typename T> static void gather_a(const uint32_t a[32][4], float A[16][16]) {
    for (int l = 0; l < 32; l++)
        for (int i = 0; i < 8; i++) {
            int r, c;
            ptx_a_pos(l, i, &r, &c);
            A[r][c] = El<T>::val(half_of(a[l][i / 2], i % 2));
        }
}

/* ---------- 1. the header's mappings are the PTX tables ---------- */

static void test_tables(void) {
    int bad = 0, covA[16][16] = {{0}}, covB[16][8] = {{0}}, covC[16][8] = {{0}};
    for (int l = 0; l < 32; l++) {
        for (int i = 0; i < 8; i++) {
            int r, c;
            ptx_a_pos(l, i, &r, &c);
            bad += a_row(l, i / 2) != r || a_col(l, i / 2, i % 2) != c;
            covA[r][c]++;
        }
        for (int i = 0; i < 4; i++) {
            int r, c;
            ptx_b_pos(l, i, &r, &c);
            bad += b_k(l, i / 2, i % 2) != r || b_n(l) != c;
            covB[r][c]++;
        }
        for (int i = 0; i < 4; i++) {
            int r, c;
            ptx_c_pos(l, i, &r, &c);
            bad += c_row(l, i) != r || c_col(l, i) != c;
            covC[r][c]++;
        }
    }
    CHECK_EQ_LL(bad, 0);
    int cov = 0;
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++) cov += covA[r][c] != 1 || (c < 8 && (covB[r][c] != 1 || covC[r][c] != 1));
    CHECK_MSG(cov == 0, "%d elements of A, B or C not held by exactly one (lane, element)", cov);
}

/* ---------- 2. swizzle, loads, bank conflicts ---------- */

/* distinct 16-byte bank groups (128-byte wavefront) for n 16-byte accesses */
static int conflicts16(const uint32_t *addr, int n) {
    int seen = 0, bad = 0;
    for (int i = 0; i < n; i++) {
        const int g = (int)(addr[i] / 16 % 8);
        bad += (seen >> g) & 1;
        seen |= 1 << g;
    }
    return bad;
}

template <int DH> static void test_swizzle(void) {
    constexpr int ROWS = BN, CH = DH / 8, RSTEP = THREADS / CH;
    int bad = 0;
    std::vector<int> hit(ROWS * DH, 0);
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < DH; c++) {
            const int off = smem_off<DH>(r, c);
            if (off < 0 || off >= ROWS * DH) bad++;
            else hit[off]++;
            bad += (off & 7) != (c & 7) || off / DH != r;                     /* chunks stay whole, rows stay put */
            bad += smem_off<DH>(r + 16, c) != off + 16 * DH;                  /* the kernel's +16-row immediates */
            bad += r + RSTEP < ROWS && smem_off<DH>(r + RSTEP, c) != off + RSTEP * DH; /* its tile-load steps */
        }
    for (int i = 0; i < ROWS * DH; i++) bad += hit[i] != 1;
    CHECK_MSG(bad == 0, "dh %d: swizzle: %d faults", DH, bad);

    /* tile loads: chunk e = tid + THREADS i is (row r0 + RSTEP i, column c0) (TilePart) and each chunk is loaded once */
    bad = 0;
    std::vector<int> chunk(ROWS * CH, 0);
    for (int tid = 0; tid < THREADS; tid++)
        for (int i = 0; i < ROWS * CH / THREADS; i++) {
            const int e = tid + THREADS * i, r = load_row<DH>(e), c = load_col<DH>(e);
            bad += r != load_row<DH>(tid) + RSTEP * i || c != load_col<DH>(tid) || c % 8;
            chunk[r * CH + c / 8]++;
        }
    for (int i = 0; i < ROWS * CH; i++) bad += chunk[i] != 1;
    /* cp.async phases: 8 consecutive threads' 16-byte stores */
    for (int tid0 = 0; tid0 < THREADS; tid0 += 8)
        for (int i = 0; i < ROWS * CH / THREADS; i++) {
            uint32_t a[8];
            for (int t = 0; t < 8; t++) {
                const int e = tid0 + t + THREADS * i;
                a[t] = 2u * smem_off<DH>(load_row<DH>(e), load_col<DH>(e));
            }
            bad += conflicts16(a, 8);
        }
    CHECK_MSG(bad == 0, "dh %d: tile loads: %d faults or bank conflicts", DH, bad);

    /* ldmatrix phases (one matrix = 8 lanes' rows), at every place the kernel loads */
    bad = 0;
    for (int blk = 0; blk < 4; blk++) /* warp (Q) or 16-row block (K, V) */
        for (int kk = 0; kk < DH / 16; kk++)
            for (int m = 0; m < 4; m++) {
                uint32_t aq[8], ak[8], av[8];
                for (int r = 0; r < 8; r++) {
                    const int l = 8 * m + r;
                    aq[r] = 2u * smem_off<DH>(16 * blk + ldsm_q_row(l), 16 * kk + ldsm_q_col(l));
                    ak[r] = 2u * smem_off<DH>(16 * blk + ldsm_k_key(l), 16 * kk + ldsm_k_dim(l));
                    av[r] = 2u * smem_off<DH>(16 * blk + ldsm_v_key(l), 16 * kk + ldsm_v_dim(l));
                }
                bad += conflicts16(aq, 8) + conflicts16(ak, 8) + conflicts16(av, 8);
            }
    CHECK_MSG(bad == 0, "dh %d: %d ldmatrix bank conflicts", DH, bad);

    /* output staging: 32 lanes' 4-byte stores (one per bank), then 8-lane phases of 16-byte loads */
    bad = 0;
    for (int d = 0; d < DH / 8; d++)
        for (int h = 0; h < 2; h++) {
            int banks = 0;
            for (int l = 0; l < 32; l++) {
                const uint32_t a = 2u * smem_off<DH>(c_row(l, 2 * h), 8 * d + c_col(l, 2 * h));
                bad += a % 4 != 0 || ((banks >> (a / 4 % 32)) & 1);
                banks |= 1 << (a / 4 % 32);
            }
        }
    for (int i = 0; i < 16 * CH / 32; i++)
        for (int p = 0; p < 4; p++) {
            uint32_t a[8];
            for (int t = 0; t < 8; t++) {
                const int e = 32 * i + 8 * p + t;
                a[t] = 2u * smem_off<DH>(load_row<DH>(e), load_col<DH>(e));
            }
            bad += conflicts16(a, 8);
        }
    CHECK_MSG(bad == 0, "dh %d: output staging: %d bank conflicts", DH, bad);
}

/* ---------- 3. one warp: S = Q K^T, P reuse, O = P V ---------- */

/* A tile of random values rounded to T: the values (row-major [rows][DH]) and the swizzled shared-memory image */
template <typename T, int DH> struct Tile {
    std::vector<float> val;
    std::vector<uint16_t> sm;
    Tile(int rows, float amp) : val(rows * DH), sm(rows * DH) {
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < DH; c++) {
                const uint16_t b = El<T>::bits(urand(-amp, amp));
                val[r * DH + c] = El<T>::val(b);
                sm[smem_off<DH>(r, c)] = b;
            }
    }
};

template <typename T, int DH> static void test_warp(void) {
    constexpr int KS = DH / 16, ND = DH / 8;
    const Tile<T, DH> Q(BM, 1.0f), K(BN, 1.0f), V(BN, 1.0f);
    int bad_q = 0, bad_s = 0, bad_p = 0, bad_o = 0;
    double worst_s = 0, worst_o = 0;
    ldsm_faults = 0;
    for (int w = 0; w < WARPS; w++) {
        /* Q fragments, as the kernel loads them */
        uint32_t qf[KS][32][4], addr[32];
        for (int kk = 0; kk < KS; kk++) {
            for (int l = 0; l < 32; l++) addr[l] = 2u * smem_off<DH>(16 * w + ldsm_q_row(l), 16 * kk + ldsm_q_col(l));
            emu_ldsm_x4(Q.sm, addr, false, qf[kk]);
            float A[16][16];
            gather_a<T>(qf[kk], A);
            for (int r = 0; r < 16; r++)
                for (int c = 0; c < 16; c++) bad_q += A[r][c] != Q.val[(16 * w + r) * DH + 16 * kk + c];
        }
        /* S: s[j] for keys 8j.., the kernel's loop with its addresses (koff + 16-row immediates) */
        static float s[NT][32][4];
        memset(s, 0, sizeof s);
        for (int kk = 0; kk < KS; kk++)
            for (int np = 0; np < NT / 2; np++) {
                uint32_t kf[32][4], b0[32][2], b1[32][2];
                for (int l = 0; l < 32; l++)
                    addr[l] = 2u * smem_off<DH>(ldsm_k_key(l), 16 * kk + ldsm_k_dim(l)) + np * 16 * DH * 2;
                emu_ldsm_x4(K.sm, addr, false, kf);
                for (int l = 0; l < 32; l++) {
                    b0[l][0] = kf[l][0], b0[l][1] = kf[l][1];
                    b1[l][0] = kf[l][2], b1[l][1] = kf[l][3];
                }
                emu_mma<T>(s[2 * np], qf[kk], b0);
                emu_mma<T>(s[2 * np + 1], qf[kk], b1);
            }
        /* where the kernel believes S is: c_row / c_col */
        for (int l = 0; l < 32; l++)
            for (int j = 0; j < NT; j++)
                for (int i = 0; i < 4; i++) {
                    double ref = 0;
                    for (int d = 0; d < DH; d++)
                        ref += (double)Q.val[(16 * w + c_row(l, i)) * DH + d] * K.val[(8 * j + c_col(l, i)) * DH + d];
                    const double err = fabs(s[j][l][i] - ref);
                    worst_s = err > worst_s ? err : worst_s;
                    bad_s += err > 1e-4 * (1 + fabs(ref));
                }
        /* P: the kernel's pack_p per lane (lane-major copies of its arrays), then as A through the PTX table */
        static float sfull[16][BN]; /* S scattered by the PTX C table */
        for (int l = 0; l < 32; l++)
            for (int j = 0; j < NT; j++)
                for (int i = 0; i < 4; i++) {
                    int r, c;
                    ptx_c_pos(l, i, &r, &c);
                    sfull[r][8 * j + c] = s[j][l][i] * 0.05f; /* into T's range with room */
                }
        uint32_t p[32][BN / 16][4];
        for (int l = 0; l < 32; l++) {
            float sl[NT][4];
            for (int j = 0; j < NT; j++)
                for (int i = 0; i < 4; i++) sl[j][i] = s[j][l][i] * 0.05f;
            pack_p<T>(sl, p[l]);
        }
        float P[16][BN];
        for (int kk = 0; kk < BN / 16; kk++) {
            uint32_t a[32][4];
            for (int l = 0; l < 32; l++) memcpy(a[l], p[l][kk], sizeof a[l]);
            float A[16][16];
            gather_a<T>(a, A);
            for (int r = 0; r < 16; r++)
                for (int c = 0; c < 16; c++) {
                    P[r][16 * kk + c] = A[r][c];
                    bad_p += A[r][c] != El<T>::val(El<T>::bits(sfull[r][16 * kk + c]));
                }
        }
        /* O = P V, the kernel's loop with its addresses (voff + 16-row immediates) */
        static float o[ND][32][4];
        memset(o, 0, sizeof o);
        for (int kk = 0; kk < BN / 16; kk++)
            for (int dp = 0; dp < ND / 2; dp++) {
                uint32_t vf[32][4], a[32][4], b0[32][2], b1[32][2];
                for (int l = 0; l < 32; l++) {
                    addr[l] = 2u * smem_off<DH>(ldsm_v_key(l), 16 * dp + ldsm_v_dim(l)) + kk * 16 * DH * 2;
                    memcpy(a[l], p[l][kk], sizeof a[l]);
                }
                emu_ldsm_x4(V.sm, addr, true, vf);
                for (int l = 0; l < 32; l++) {
                    b0[l][0] = vf[l][0], b0[l][1] = vf[l][1];
                    b1[l][0] = vf[l][2], b1[l][1] = vf[l][3];
                }
                emu_mma<T>(o[2 * dp], a, b0);
                emu_mma<T>(o[2 * dp + 1], a, b1);
            }
        for (int l = 0; l < 32; l++)
            for (int d = 0; d < ND; d++)
                for (int i = 0; i < 4; i++) {
                    double ref = 0;
                    for (int key = 0; key < BN; key++)
                        ref += (double)P[c_row(l, i)][key] * V.val[key * DH + 8 * d + c_col(l, i)];
                    const double err = fabs(o[d][l][i] - ref);
                    worst_o = err > worst_o ? err : worst_o;
                    bad_o += err > 1e-4 * (1 + fabs(ref));
                }
    }
    const char *tn = El<T>::name();
    CHECK_MSG(ldsm_faults == 0, "%s dh %d: %d unaligned or outside ldmatrix row addresses", tn, DH, ldsm_faults);
    CHECK_MSG(bad_q == 0, "%s dh %d: %d Q A-fragment elements wrong", tn, DH, bad_q);
    CHECK_MSG(bad_s == 0, "%s dh %d: %d S elements off (worst %g)", tn, DH, bad_s, worst_s);
    CHECK_MSG(bad_p == 0, "%s dh %d: %d P elements: C -> A reuse inconsistent", tn, DH, bad_p);
    CHECK_MSG(bad_o == 0, "%s dh %d: %d O elements off (worst %g)", tn, DH, bad_o, worst_o);
}

/* ---------- 4. the whole kernel, CTA by CTA ---------- */

/* The kernel's steps with 32 lanes at a time: shared memory is an image of
 * uint16_t, the per-lane arrays gain a leading lane index, collective
 * operations (ldmatrix, mma, shuffles) are emulated, and everything per lane
 * calls attn_mma.h as the kernel does. The loop structure (tile order,
 * double buffer, masking condition, epilogue) repeats attn_mma.cu's. */
template <typename T, int DH>
static void emu_attention(const uint16_t *q, int64_t ldq, const uint16_t *k, int64_t ldk, const uint16_t *v,
                          int64_t ldv, uint16_t *o, int64_t ldo, int64_t B, int64_t Nq, int64_t Nk, int heads) {
    constexpr int KS = DH / 16, ND = DH / 8, CH = DH / 8;
    const int64_t qtiles = (Nq + BM - 1) / BM, blocks = qtiles * B * heads;
    const float sl2 = 1.4426950408889634f / sqrtf((float)DH);
    std::vector<uint16_t> sm((BM + 4 * BN) * DH);
    const size_t sQ = 0, sK = BM * DH, sV = sK + 2 * BN * DH; /* element offsets */
    /* cp.async of a ROWS x DH tile with zero fill, as load_tile */
    auto load = [&](size_t dst, int rows, const uint16_t *src, int64_t ld, int64_t row0, int64_t nvalid) {
        for (int e = 0; e < rows * CH; e++) {
            const int r = load_row<DH>(e), c = load_col<DH>(e);
            for (int x = 0; x < 8; x++)
                sm[dst + smem_off<DH>(r, c) + x] = r < nvalid ? src[(row0 + r) * ld + c + x] : 0;
        }
    };
    for (int64_t bid = 0; bid < blocks; bid++) {
        std::fill(sm.begin(), sm.end(), (uint16_t)0x7fc0); /* NaN in fp16 and bf16: stale shared memory */
        const int64_t qt = bid % qtiles, bh = bid / qtiles, b = bh / heads;
        const int h = (int)(bh % heads);
        const int64_t q0 = qt * BM;
        const uint16_t *qb = q + b * Nq * ldq + (int64_t)h * DH, *kb = k + b * Nk * ldk + (int64_t)h * DH,
                       *vb = v + b * Nk * ldv + (int64_t)h * DH;
        const int ntiles = (int)((Nk + BN - 1) / BN);
        load(sQ, BM, qb, ldq, q0, Nq - q0);
        load(sK, BN, kb, ldk, 0, Nk);
        load(sV, BN, vb, ldv, 0, Nk);

        static uint32_t qf[WARPS][KS][32][4];
        static float oacc[WARPS][32][ND][4], m[WARPS][32][2], l[WARPS][32][2];
        for (int w = 0; w < WARPS; w++) {
            for (int kk = 0; kk < KS; kk++) {
                uint32_t addr[32];
                for (int ln = 0; ln < 32; ln++)
                    addr[ln] = 2u * (uint32_t)(sQ + smem_off<DH>(16 * w + ldsm_q_row(ln), 16 * kk + ldsm_q_col(ln)));
                emu_ldsm_x4(sm, addr, false, qf[w][kk]);
            }
            for (int ln = 0; ln < 32; ln++) {
                for (int d = 0; d < ND; d++)
                    for (int i = 0; i < 4; i++) oacc[w][ln][d][i] = 0.0f;
                m[w][ln][0] = m[w][ln][1] = -INFINITY;
                l[w][ln][0] = l[w][ln][1] = 0.0f;
            }
        }
        for (int t = 0; t < ntiles; t++) {
            if (t + 1 < ntiles) {
                const int64_t j1 = (int64_t)(t + 1) * BN;
                load(sK + ((t + 1) & 1) * BN * DH, BN, kb, ldk, j1, Nk - j1);
                load(sV + ((t + 1) & 1) * BN * DH, BN, vb, ldv, j1, Nk - j1);
            }
            const size_t kt = sK + (t & 1) * BN * DH, vt = sV + (t & 1) * BN * DH;
            for (int w = 0; w < WARPS; w++) {
                static float s[32][NT][4], sj[32][4];
                memset(s, 0, sizeof s);
                for (int kk = 0; kk < KS; kk++)
                    for (int np = 0; np < NT / 2; np++) {
                        uint32_t addr[32], kf[32][4], bb[32][2];
                        for (int ln = 0; ln < 32; ln++)
                            addr[ln] = 2u * (uint32_t)(kt + smem_off<DH>(ldsm_k_key(ln), 16 * kk + ldsm_k_dim(ln))) +
                                       np * 16 * DH * 2;
                        emu_ldsm_x4(sm, addr, false, kf);
                        for (int half = 0; half < 2; half++) {
                            const int j = 2 * np + half;
                            for (int ln = 0; ln < 32; ln++) {
                                bb[ln][0] = kf[ln][2 * half], bb[ln][1] = kf[ln][2 * half + 1];
                                memcpy(sj[ln], s[ln][j], sizeof sj[ln]);
                            }
                            emu_mma<T>(sj, qf[w][kk], bb);
                            for (int ln = 0; ln < 32; ln++) memcpy(s[ln][j], sj[ln], sizeof sj[ln]);
                        }
                    }
                const int64_t left = Nk - (int64_t)t * BN;
                float mx[32][2], x1[32][2];
                for (int ln = 0; ln < 32; ln++) {
                    if (left < BN) mask_keys(s[ln], ln, (int)left);
                    tile_row_max(s[ln], mx[ln]);
                }
                for (int hh = 0; hh < 2; hh++) { /* __shfl_xor_sync 1, then 2 */
                    for (int ln = 0; ln < 32; ln++) x1[ln][hh] = fmaxf(mx[ln][hh], mx[ln ^ 1][hh]);
                    for (int ln = 0; ln < 32; ln++) mx[ln][hh] = fmaxf(x1[ln][hh], x1[ln ^ 2][hh]);
                }
                uint32_t p[32][BN / 16][4];
                for (int ln = 0; ln < 32; ln++) {
                    softmax_step<ND>(s[ln], mx[ln], m[w][ln], l[w][ln], oacc[w][ln], sl2);
                    pack_p<T>(s[ln], p[ln]);
                }
                for (int kk = 0; kk < BN / 16; kk++)
                    for (int dp = 0; dp < ND / 2; dp++) {
                        uint32_t addr[32], vf[32][4], a[32][4], bb[32][2];
                        for (int ln = 0; ln < 32; ln++) {
                            addr[ln] = 2u * (uint32_t)(vt + smem_off<DH>(ldsm_v_key(ln), 16 * dp + ldsm_v_dim(ln))) +
                                       kk * 16 * DH * 2;
                            memcpy(a[ln], p[ln][kk], sizeof a[ln]);
                        }
                        emu_ldsm_x4(sm, addr, true, vf);
                        for (int half = 0; half < 2; half++) {
                            const int d = 2 * dp + half;
                            for (int ln = 0; ln < 32; ln++) {
                                bb[ln][0] = vf[ln][2 * half], bb[ln][1] = vf[ln][2 * half + 1];
                                memcpy(sj[ln], oacc[w][ln][d], sizeof sj[ln]);
                            }
                            emu_mma<T>(sj, a, bb);
                            for (int ln = 0; ln < 32; ln++) memcpy(oacc[w][ln][d], sj[ln], sizeof sj[ln]);
                        }
                    }
            }
        }
        /* epilogue, per warp: quad sums of l, O / l staged in the warp's Q rows, 16-byte row stores */
        for (int w = 0; w < WARPS; w++) {
            float x1[32][2];
            for (int hh = 0; hh < 2; hh++) {
                for (int ln = 0; ln < 32; ln++) x1[ln][hh] = l[w][ln][hh] + l[w][ln ^ 1][hh];
                for (int ln = 0; ln < 32; ln++) l[w][ln][hh] = 1.0f / (x1[ln][hh] + x1[ln ^ 2][hh]);
            }
            const size_t ow = sQ + 16 * w * DH;
            for (int ln = 0; ln < 32; ln++)
                for (int d = 0; d < ND; d++)
                    for (int hh = 0; hh < 2; hh++) {
                        const uint32_t pk = pack2<T>(oacc[w][ln][d][2 * hh] * l[w][ln][hh],
                                                     oacc[w][ln][d][2 * hh + 1] * l[w][ln][hh]);
                        const size_t at = ow + smem_off<DH>(c_row(ln, 2 * hh), 8 * d + c_col(ln, 2 * hh));
                        sm[at] = (uint16_t)(pk & 0xffff);
                        sm[at + 1] = (uint16_t)(pk >> 16);
                    }
            uint16_t *ob = o + b * Nq * ldo + (int64_t)h * DH;
            for (int e = 0; e < 16 * CH; e++) {
                const int r = load_row<DH>(e), c = load_col<DH>(e);
                const int64_t row = q0 + 16 * w + r;
                if (row < Nq)
                    for (int x = 0; x < 8; x++) ob[row * ldo + c + x] = sm[ow + smem_off<DH>(r, c) + x];
            }
        }
    }
}

template <typename T, int DH> static void test_attention(int64_t Nq, int64_t Nk, float qamp) {
    const int64_t B = 2;
    const int heads = 2, W = heads * DH;
    const int64_t ldq = W + 8, ldkv = 2 * W, ldo = W + 16; /* Q padded, K and V slices of one KV projection */
    std::vector<uint16_t> q(B * Nq * ldq), kv(B * Nk * ldkv), o(B * Nq * ldo, (uint16_t)0xABCD);
    for (auto &x : q) x = El<T>::bits(urand(-qamp, qamp));
    /* K rows grow with j, so later tiles hold larger scores and the running max moves (rescaling runs) */
    for (int64_t r = 0; r < B * Nk; r++) {
        const float kamp = 0.5f + 1.5f * (float)(r % Nk) / (float)Nk;
        for (int64_t c = 0; c < ldkv; c++) kv[r * ldkv + c] = El<T>::bits(c < W ? urand(-kamp, kamp) : urand(-1, 1));
    }
    emu_attention<T, DH>(q.data(), ldq, kv.data(), ldkv, kv.data() + W, ldkv, o.data(), ldo, B, Nq, Nk, heads);

    const double atol = El<T>::tol, rtol = El<T>::tol;
    int bad = 0, nan = 0, guard = 0;
    double worst = 0, sse = 0, ssr = 0;
    std::vector<double> sc(Nk);
    for (int64_t b = 0; b < B; b++)
        for (int h = 0; h < heads; h++)
            for (int64_t i = 0; i < Nq; i++) {
                const uint16_t *qi = &q[(b * Nq + i) * ldq + h * DH];
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < Nk; j++) {
                    const uint16_t *kj = &kv[(b * Nk + j) * ldkv + h * DH];
                    double acc = 0;
                    for (int d = 0; d < DH; d++) acc += (double)El<T>::val(qi[d]) * El<T>::val(kj[d]);
                    sc[j] = acc / sqrt((double)DH);
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                for (int64_t j = 0; j < Nk; j++) sum += (sc[j] = exp(sc[j] - mx));
                for (int d = 0; d < DH; d++) {
                    double ref = 0;
                    for (int64_t j = 0; j < Nk; j++) ref += sc[j] * El<T>::val(kv[(b * Nk + j) * ldkv + W + h * DH + d]);
                    ref /= sum;
                    const double got = El<T>::val(o[(b * Nq + i) * ldo + h * DH + d]);
                    if (got != got) nan++;
                    const double err = fabs(got - ref);
                    worst = err > worst ? err : worst;
                    sse += err * err, ssr += ref * ref;
                    bad += !(err <= atol + rtol * fabs(ref));
                }
            }
    for (int64_t r = 0; r < B * Nq; r++) /* the row padding of O is never written */
        for (int64_t c = W; c < ldo; c++) guard += o[r * ldo + c] != 0xABCD;
    const char *tn = El<T>::name();
    if (verbose)
        printf("  %s dh %3d Nq %3lld Nk %3lld: worst |err| %.3g (tol %.3g + %.3g |ref|), normalised MSE %.3g\n", tn, DH,
               (long long)Nq, (long long)Nk, worst, atol, rtol, ssr > 0 ? sse / ssr : -1.0);
    CHECK_MSG(nan == 0 && bad == 0 && guard == 0,
              "%s dh %d Nq %lld Nk %lld: %d off (worst %.3g, tol %.3g), %d NaN, %d guard elements written", tn, DH,
              (long long)Nq, (long long)Nk, bad, worst, atol, nan, guard);
    CHECK_MSG(ssr > 0 && sse / ssr < El<T>::nmse, "%s dh %d Nq %lld Nk %lld: normalised MSE %.3g", tn, DH, (long long)Nq,
              (long long)Nk, ssr > 0 ? sse / ssr : -1.0);
}

template <typename T, int DH> static void test_all_sizes(void) {
    const int64_t nks[] = {1, 8, 63, 64, 77, 128, 200};
    for (int64_t nk : nks) test_attention<T, DH>(77, nk, 2.5f);
    test_attention<T, DH>(1, 77, 2.5f);  /* one query row: a 64-row tile with 63 padded */
    test_attention<T, DH>(128, 77, 0.5f); /* whole tiles, flat softmax */
}

int main(int argc, char **argv) {
    verbose = argc > 1 && !strcmp(argv[1], "-v");
    test_tables();
    test_swizzle<64>();
    test_swizzle<128>();
    test_warp<__half, 64>();
    test_warp<__half, 128>();
    test_warp<__nv_bfloat16, 64>();
    test_warp<__nv_bfloat16, 128>();
    test_all_sizes<__half, 64>();
    test_all_sizes<__nv_bfloat16, 64>();
    test_all_sizes<__half, 128>();
    test_all_sizes<__nv_bfloat16, 128>();
    TEST_MAIN_END("test_cuda_mma_layout");
}
