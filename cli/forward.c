/* unetlab forward: one forward of a teacher or a student on the inputs of an
 * io.safetensors file, on the CPU or the GPU (--device, --dtype); writes the
 * output and, with --features, every feature point (float32, NCHW). */
#include "cli.h"
#include "device.h"
#include "err.h"
#include "fileio.h"
#include "eval.h"
#include "forward.h"
#include "plan.h"
#include "safetensors.h"
#include "backend.h"
#include "dtype.h"
#ifdef UNETLAB_CUDA
#include "backend_cuda.h"
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char USAGE[] =
    "usage: unetlab forward --model M --inputs IN.safetensors --out OUT.safetensors\n"
    "                       [--features] [--plan P] [--drop NAME,...] [--seed S]\n"
    "                       [--device auto|cpu|ref|cuda] [--dtype fp16|bf16|fp32]\n"
    "\n"
    "  --model M     preset, config.json, diffusers UNet directory or pipeline root\n"
    "  --inputs IN   input.sample [B,4,H,W], input.timestep [B], input.encoder_hidden_states\n"
    "                [B,L,D], and for SDXL-style models input.text_embeds [B,T], input.time_ids\n"
    "                [B,6]; float32, float16 or bfloat16\n"
    "  --out OUT     writes 'output' (float32) and, with --features, one float32 tensor per\n"
    "                feature point named by its diffusers module path\n"
    "  --plan P      run a student: the teacher minus the removals of plan file P (JSON)\n"
    "  --drop NAMES  run a student: the teacher without these transformer layers; its\n"
    "                features carry the names of the teacher modules they were copied from\n"
    "  --seed S      seed of the random weights of presets and bare configs (default 0)\n"
    "  --device D    auto (default: the GPU when one answers, else the CPU), cpu (the fast\n"
    "                CPU engine), ref (the plain-loop reference engine) or cuda\n"
    "  --dtype T     on the GPU: fp16 (default), bf16 or fp32 (no TF32); on the CPU: fp32\n"
    "                (default) or bf16 (AVX512-BF16 or AMX CPUs; the reference: fp32 only)\n";

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cmd_forward(int argc, char **argv) {
    const char *model = NULL, *inputs = NULL, *out = NULL, *features = NULL, *drop = NULL, *seed_s = "0",
               *device = "auto", *plan_path = NULL, *dtype_s = NULL;
    const Opt opts[] = {{"--model", 1, &model}, {"--inputs", 1, &inputs}, {"--out", 1, &out},
                        {"--features", 0, &features}, {"--drop", 1, &drop}, {"--seed", 1, &seed_s},
                        {"--device", 1, &device}, {"--plan", 1, &plan_path}, {"--dtype", 1, &dtype_s},
                        {NULL, 0, NULL}};
    int rc = cli_parse(argc, argv, opts, USAGE);
    if (rc) return rc;
    if (!model || !inputs || !out) return err_set(ERR_USAGE, "forward: --model, --inputs and --out are required (see unetlab forward --help)");
    long seed;
    if ((rc = cli_int("--seed", seed_s, 0, 0x7fffffffL, &seed))) return rc;
    DType dt;
    int use_cuda;
    if ((rc = cli_device("forward", device, dtype_s, 0, &use_cuda, &dt))) return rc;

    ModelSource m;
    Weights w = {0};
    UnetInputs in = {0};
    FeatureSet feats = {0};
    Tensor y = {0};
    ModuleTree teacher = {0};
    Arch student;
    if ((rc = out_probe(out))) return rc; /* before the work, not after it */
    if ((rc = model_resolve(&m, model))) goto done;
    Plan plan;
    rc = cli_student(&m.arch, plan_path, drop, &plan, &student);
    plan_free(&plan);
    if (rc) goto done;
    if ((rc = unet_inputs_load(inputs, &m.arch, &in))) goto done;
    Shape s = {(int)in.sample.shape[0], (int)in.sample.shape[2], (int)in.sample.shape[3],
               (int)in.encoder_hidden_states.shape[1]};
    unet_tree_build(&teacher, &m.arch, &s);
    if (!use_cuda && (rc = unet_memory_check("forward", &m.arch, &s, features ? s.batch : 0))) goto done;
    double t0 = now();
    if ((rc = weights_load(&w, &m, &teacher, (uint64_t)seed))) goto done;
    w.engine_owns = 1; /* only the forward reads them */
    double t1 = now(), t2;
    char where[600];
    snprintf(where, sizeof where, "%s", cpu_engine_describe());
#ifdef UNETLAB_CUDA
    if (use_cuda) {
        CudaEngine *e;
        if ((rc = cuda_engine_new(&e, &w, &teacher, dt))) goto done;
        snprintf(where, sizeof where, "%s, %s", cuda_engine_describe(e), dtype_name(dt));
        t1 = now();
        rc = unet_forward_be(cuda_engine_backend(e), &student, &in, NULL, &y, features ? features_keep : NULL, &feats,
                             NULL, NULL);
        t2 = now();
        cuda_engine_free(e);
    } else
#endif
    {
        rc = unet_forward(&student, &w, &in, &y, features ? features_keep : NULL, &feats);
        t2 = now();
    }
    if (rc) goto done;
    fprintf(stderr, "unetlab: forward of %s%s on %s: batch %lld, latent %lldx%lld; weights %.2f s (%s), forward %.3f s\n",
            model, drop || plan_path ? " (student)" : "", where, (long long)in.sample.shape[0], (long long)in.sample.shape[2],
            (long long)in.sample.shape[3], t1 - t0, w.origin, t2 - t1);
    StOut *all = xcalloc((size_t)(feats.n + 1), sizeof *all);
    for (int i = 0; i <= feats.n; i++) { /* the output, then each feature by module path */
        const Tensor *t = i ? &feats.t[i - 1] : &y;
        all[i] = (StOut){.name = i ? feats.name[i - 1] : "output", .ndim = t->ndim, .data = t->d};
        for (int d = 0; d < t->ndim; d++) all[i].shape[d] = t->shape[d];
    }
    rc = st_write(out, all, feats.n + 1);
    free(all);
    if (!rc && feats.n) printf("wrote %s: output and %d features\n", out, feats.n);
    else if (!rc) printf("wrote %s: output\n", out);
done:
    features_free(&feats);
    tensor_free(&y);
    unet_inputs_free(&in);
    weights_free(&w);
    unet_tree_free(&teacher);
    model_source_free(&m);
    return rc;
}
