/* rng: see rng.h. */
#include "rng.h"
#include <math.h>

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

void rng_normal(Rng *r, float *out, int64_t n, float mean, float std) {
    for (int64_t i = 0; i < n; i += 2) { /* Box-Muller, two values per pair */
        double u = rng_uniform(r), v = rng_uniform(r), m = sqrt(-2.0 * log(u));
        double a = m * cos(2 * M_PI * v), b = m * sin(2 * M_PI * v);
        float x = (float)(mean + std * a), y = (float)(mean + std * b);
        out[i] = x != 0.0f ? x : std * 1e-3f;
        if (i + 1 < n) out[i + 1] = y != 0.0f ? y : std * 1e-3f;
    }
}
