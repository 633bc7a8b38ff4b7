/* rng: seeded, order-independent random numbers. Each weight tensor draws
 * from its own stream keyed by (seed, name), so a tensor's values do not
 * depend on which other tensors were made first (teacher and student see the
 * same weights). Tested in tests/test_ops.c (moments, determinism). */
#ifndef UNETLAB_RNG_H
#define UNETLAB_RNG_H
#include <stdint.h>

typedef struct { uint64_t s; } Rng;

uint64_t rng_hash(const char *s);               /* FNV-1a 64 */
Rng rng_for(uint64_t seed, const char *name);
uint64_t rng_next(Rng *r);                      /* splitmix64 */
double rng_uniform(Rng *r);                     /* (0, 1) */
/* n normal(mean, std) values, never exactly zero: one draw from r keys a
 * counter-based stream (Box-Muller pairs, each a pure function of key and
 * index), so it runs vectorised on every thread and gives the same bits on
 * every x86-64 and thread count. */
void rng_normal(Rng *r, float *out, int64_t n, float mean, float std);

#endif
