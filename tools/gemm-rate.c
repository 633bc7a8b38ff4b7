/* gemm-rate: the machine's matrix-multiply ceiling through the library the
 * fast CPU engine uses (oneDNN), on the threads OpenMP is given: dnnl_sgemm
 * (fp32) and a bf16 matmul primitive (fp32 accumulation) of N x N x N, best of
 * R. For docs/perf.md's "share of the GEMM rate"; run by scripts/bench-cpu.sh.
 * usage: gemm-rate [N [R]]   (default 2048 10); prints one JSON object. */
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define OK(call) do { if ((call) != dnnl_success) { fprintf(stderr, "gemm-rate: %s failed\n", #call); exit(1); } } while (0)

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 2048, reps = argc > 2 ? atol(argv[2]) : 10;
    if (n < 16 || reps < 1) { fprintf(stderr, "usage: gemm-rate [N >= 16 [R >= 1]]\n"); return 2; }
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    for (long i = 0; i < n * n; i++) a[i] = (float)(i % 7) * 0.1f, b[i] = (float)(i % 5) * 0.1f;
    double flop = 2.0 * n * n * n, best32 = 1e30, best16 = 1e30;
    for (long r = 0; r <= reps; r++) { /* the first is a warm-up */
        double t0 = now();
        OK(dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n));
        if (r && now() - t0 < best32) best32 = now() - t0;
    }
    dnnl_engine_t eng;
    dnnl_stream_t st;
    OK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    OK(dnnl_stream_create(&st, eng, dnnl_stream_default_flags));
    dnnl_memory_desc_t ma, mb, mc;
    dnnl_dims_t d = {n, n};
    OK(dnnl_memory_desc_init_by_tag(&ma, 2, d, dnnl_bf16, dnnl_ab));
    OK(dnnl_memory_desc_init_by_tag(&mb, 2, d, dnnl_bf16, dnnl_ab));
    OK(dnnl_memory_desc_init_by_tag(&mc, 2, d, dnnl_f32, dnnl_ab));
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t p;
    const char *impl = "none";
    if (dnnl_matmul_desc_init(&md, &ma, &mb, NULL, &mc) == dnnl_success &&
        dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL) == dnnl_success) {
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        OK(dnnl_primitive_create(&p, pd));
        dnnl_memory_t xa, xb, xc;
        OK(dnnl_memory_create(&xa, &ma, eng, DNNL_MEMORY_ALLOCATE));
        OK(dnnl_memory_create(&xb, &mb, eng, DNNL_MEMORY_ALLOCATE));
        OK(dnnl_memory_create(&xc, &mc, eng, c));
        void *ha, *hb;
        dnnl_memory_get_data_handle(xa, &ha);
        dnnl_memory_get_data_handle(xb, &hb);
        memset(ha, 0x3e, sizeof(uint16_t) * n * n); /* 0x3e3e: a small bf16 value */
        memset(hb, 0x3e, sizeof(uint16_t) * n * n);
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, xa}, {DNNL_ARG_WEIGHTS, xb}, {DNNL_ARG_DST, xc}};
        for (long r = 0; r <= reps; r++) {
            double t0 = now();
            OK(dnnl_primitive_execute(p, st, 3, args));
            OK(dnnl_stream_wait(st));
            if (r && now() - t0 < best16) best16 = now() - t0;
        }
    }
    printf("{\"n\": %ld, \"threads\": %d, \"fp32_gflops\": %.1f, \"bf16_gflops\": %.1f, \"bf16_impl\": \"%s\"}\n", n,
           omp_get_max_threads(), flop / best32 / 1e9, best16 < 1e30 ? flop / best16 / 1e9 : 0.0, impl);
    return 0;
}
