/* rng: see rng.h. */
#include "rng.h"
#include <math.h>
#include <string.h>

uint64_t rng_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 offset basis */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

uint64_t rng_next(Rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

Rng rng_for(uint64_t seed, const char *name) {
    Rng r = {seed ^ rng_hash(name)};
    rng_next(&r);
    return r;
}

double rng_uniform(Rng *r) { return ((double)(rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

/* splitmix64's finaliser of x */
static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ln x for normal x > 0, to ~1e-7: x = 2^e m with m in [0.707, 1.414), then
 * ln m = 2 atanh(t / (2 + t)), t = m - 1, by its series to z^9. Plain float
 * arithmetic (C11 mode: no contraction into FMA), so every x86-64 gives the
 * same bits. */
static float ln(float x) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    int e = (int)((b >> 23) & 0xff) - 127;
    b = (b & 0x7fffffu) | 0x3f800000u;
    float m;
    memcpy(&m, &b, sizeof m);
    if (m > 1.41421356f) {
        m *= 0.5f;
        e++;
    }
    float t = m - 1.0f, z = t / (2.0f + t), z2 = z * z;
    float p = z * (2.0f + z2 * (0.666666667f + z2 * (0.4f + z2 * (0.285714286f + z2 * 0.222222222f))));
    return p + (float)e * 0.693147181f;
}

/* Pair j of the stream `key`: Marsaglia's polar method on its own counter
 * (key, j, try), so any pair can be drawn without the ones before it. */
static void pair(uint64_t key, int64_t j, float *a, float *b) {
    for (uint64_t k = 0;; k++) {
        uint64_t z = mix(key + 0x9e3779b97f4a7c15ull * (uint64_t)(j + 1) + (k << 58));
        float u = (float)((int64_t)(z >> 40) - (1 << 23)) * (1.0f / (1 << 23)) + 0.5f / (1 << 23);
        float v = (float)((int64_t)(z & 0xffffffu) - (1 << 23)) * (1.0f / (1 << 23)) + 0.5f / (1 << 23);
        float s = u * u + v * v;
        if (s > 0.0f && s < 1.0f) {
            float f = sqrtf(-2.0f * ln(s) / s);
            *a = u * f;
            *b = v * f;
            return;
        }
    }
}

void rng_normal(Rng *r, float *out, int64_t n, float mean, float std) {
    uint64_t key = rng_next(r);
    int64_t pairs = (n + 1) / 2;
#pragma omp parallel for schedule(static) if (pairs > (1 << 16))
    for (int64_t j = 0; j < pairs; j++) {
        float a, b;
        pair(key, j, &a, &b);
        float x = mean + std * a, y = mean + std * b;
        out[2 * j] = x != 0.0f ? x : std * 1e-3f;
        if (2 * j + 1 < n) out[2 * j + 1] = y != 0.0f ? y : std * 1e-3f;
    }
}
