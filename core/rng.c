/* rng: see rng.h. */
#include "rng.h"
#include "clones.h"
#include <math.h>
#include <omp.h>
#include <string.h>

uint64_t rng_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 offset basis */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* splitmix64's finaliser of x */
static inline __attribute__((always_inline)) uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t rng_next(Rng *r) { return mix(r->s += 0x9e3779b97f4a7c15ull); }

Rng rng_for(uint64_t seed, const char *name) {
    Rng r = {seed ^ rng_hash(name)};
    rng_next(&r);
    return r;
}

double rng_uniform(Rng *r) { return ((double)(rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

/* The generator of rng_normal: Box-Muller on a counter, pair j of stream
 * `key` from mix(key + golden * (j + 1)) alone: the high and low 24 bits are
 * the two uniforms. ln, sin and cos are our own polynomials (to ~1e-7), all
 * plain float arithmetic without branches, so that the compiler vectorises
 * the loop; C11 mode never contracts a * b + c into an FMA, and nothing is
 * summed across lanes, so the AVX-512, AVX2 and baseline builds of it give
 * the same bits, whatever the thread count. */
/* ln x for normal x > 0: x = 2^e m, m in [0.707, 1.414), ln m = 2 atanh(t / (2 + t)), t = m - 1. */
static inline __attribute__((always_inline)) float ln(float x) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    int32_t e = (int32_t)(b >> 23) - 127;
    b = (b & 0x7fffffu) | 0x3f800000u;
    float m;
    memcpy(&m, &b, sizeof m);
    int big = m > 1.41421356f;
    m = big ? m * 0.5f : m;
    e += big;
    float t = m - 1.0f, z = t / (2.0f + t), z2 = z * z;
    float p = z * (2.0f + z2 * (0.666666667f + z2 * (0.4f + z2 * (0.285714286f + z2 * 0.222222222f))));
    return p + (float)e * 0.693147181f;
}

/* out[2j], out[2j + 1] for pairs j in [j0, j1): mean + std * (r cos, r sin). */
CLONES static void normal_pairs(uint64_t key, int64_t j0, int64_t j1, float mean, float std, float *out) {
    for (int64_t j = j0; j < j1; j++) {
        uint64_t z = mix(key + 0x9e3779b97f4a7c15ull * (uint64_t)(j + 1));
        float u = ((float)(int32_t)(z >> 40) + 0.5f) * (1.0f / 16777216.0f); /* (0, 1) */
        float v = ((float)(int32_t)(z & 0xffffffu) + 0.5f) * (1.0f / 16777216.0f);
        float r = sqrtf(-2.0f * ln(u));
        /* 2 pi v = 2y + pi with y = pi (v - 1/2) in (-pi/2, pi/2): cos = -cos 2y, sin = -sin 2y */
        float y = 3.14159265f * (v - 0.5f), y2 = y * y;
        float sy = y * (1.0f + y2 * (-1.66666667e-1f + y2 * (8.33333333e-3f + y2 * (-1.98412698e-4f +
                   y2 * (2.75573192e-6f + y2 * -2.50521084e-8f)))));
        float cy = 1.0f + y2 * (-0.5f + y2 * (4.16666667e-2f + y2 * (-1.38888889e-3f + y2 * (2.48015873e-5f +
                   y2 * (-2.75573192e-7f + y2 * 2.08767570e-9f)))));
        float a = mean + std * (r * -(cy * cy - sy * sy)), b = mean + std * (r * -(2.0f * sy * cy));
        out[2 * (j - j0)] = a != 0.0f ? a : std * 1e-3f;
        out[2 * (j - j0) + 1] = b != 0.0f ? b : std * 1e-3f;
    }
}

void rng_normal(Rng *r, float *out, int64_t n, float mean, float std) {
    uint64_t key = rng_next(r);
    int64_t pairs = n / 2;
    int nt = pairs > (1 << 16) ? omp_get_max_threads() : 1;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), k = omp_get_num_threads();
        int64_t lo = pairs * t / k, hi = pairs * (t + 1) / k;
        normal_pairs(key, lo, hi, mean, std, out + 2 * lo);
    }
    if (n % 2) { /* the last value: the first of pair n / 2 */
        float two[2];
        normal_pairs(key, pairs, pairs + 1, mean, std, two);
        out[n - 1] = two[0];
    }
}
