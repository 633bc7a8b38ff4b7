/* emu: runs CUDA kernels written as grid-stride loops on the host, for
 * tests/test_cuda_emu.cpp (host C++, never nvcc). emu_launch(grid, block,
 * kernel, args...) calls the kernel once per (block, thread), one after
 * another, with blockIdx / threadIdx / blockDim / gridDim set as on the
 * device, so a grid-stride loop covers its range exactly as it would there,
 * a grid smaller than the data included. Only for kernels whose threads do
 * not talk to each other: no shared memory, barriers or warp shuffles (each
 * thread runs to its end before the next starts).
 * What the device would refuse counts as a fault, kept in emu_faults with
 * the first one's text in emu_fault_msg: a launch outside CUDA's limits, and
 * (through ops_kernels.cuh's ldp / stp, which call emu_vec_access here when
 * UNETLAB_CUDA_EMU is defined) a vector access not aligned to its size,
 * which the GPU reports as a misaligned address. The access is still made
 * (memcpy), so the results can be compared too.
 * Include it before any CUDA header: it defines __global__, __device__ and
 * __host__ away; the CUDA headers give __forceinline__ and the host versions
 * of the __half / __nv_bfloat16 conversions. */
#ifndef UNETLAB_CUDA_EMU_H
#define UNETLAB_CUDA_EMU_H
#ifdef __CUDACC__
#error "emu.h is for a host C++ compiler, not nvcc"
#endif
#define UNETLAB_CUDA_EMU 1
#define __global__
#define __device__
#define __host__

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <vector_types.h>

inline thread_local uint3 blockIdx, threadIdx;
inline thread_local dim3 blockDim, gridDim;

inline thread_local long emu_faults;
inline thread_local char emu_fault_msg[160];

static inline void emu_fault(const char *what, unsigned long long a, unsigned long long b) {
    if (emu_faults++ == 0) snprintf(emu_fault_msg, sizeof emu_fault_msg, "%s (%llu, %llu)", what, a, b);
}

/* One vector access of `bytes` (a Pack) from src to dst: both must be aligned to bytes. */
static inline void emu_vec_access(void *dst, const void *src, size_t bytes) {
    const uintptr_t bad = (uintptr_t)dst % bytes ? (uintptr_t)dst : (uintptr_t)src % bytes ? (uintptr_t)src : 0;
    if (bad) emu_fault("misaligned vector access (address, bytes)", bad, bytes);
    memcpy(dst, src, bytes);
}

/* kernel<<<grid, block>>>(args...), run to completion on this thread. */
template <typename... P, typename... A> void emu_launch(dim3 grid, dim3 block, void (*kernel)(P...), A... args) {
    if (grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.y > 65535 || grid.z > 65535 || grid.x > 0x7fffffffu)
        return (void)emu_fault("launch: bad grid (x, y)", grid.x, grid.y);
    if (block.x < 1 || block.y < 1 || block.z < 1 || block.z > 64 ||
        (unsigned long long)block.x * block.y * block.z > 1024)
        return (void)emu_fault("launch: bad block (x, y)", block.x, block.y);
    gridDim = grid;
    blockDim = block;
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                blockIdx.x = bx, blockIdx.y = by, blockIdx.z = bz;
                for (unsigned tz = 0; tz < block.z; tz++)
                    for (unsigned ty = 0; ty < block.y; ty++)
                        for (unsigned tx = 0; tx < block.x; tx++) {
                            threadIdx.x = tx, threadIdx.y = ty, threadIdx.z = tz;
                            kernel(args...);
                        }
            }
}
#endif
