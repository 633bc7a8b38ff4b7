/* clones: a function compiled for AVX-512 (x86-64-v4), AVX2+FMA (x86-64-v3)
 * and baseline x86-64, the right one picked at load time; plain loops in it
 * are vectorised for each. The helpers it inlines must be always_inline to
 * be compiled for the clone's ISA. Used by kernels/cpu/fastops.c and
 * core/rng.c. */
#ifndef UNETLAB_CLONES_H
#define UNETLAB_CLONES_H
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
