# unetlab build. `make` builds build/unetlab: CUDA-enabled when nvcc is found
# (CUDA=0|1 overrides), CPU-only otherwise, and says which. `make test` and
# `make demo` install missing Debian packages first (scripts/setup.sh).
# V=1 shows the full compiler command lines.
# SAN=1 builds into build-san/ with AddressSanitizer + UndefinedBehaviorSanitizer.

CC      ?= cc
NVCC    ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
ifeq ($(origin CUDA), undefined)
  CUDA := $(if $(NVCC),1,0)
endif
# The fast CPU engine needs oneDNN (libdnnl-dev); DNNL=0 builds without it
# (the CPU then runs the reference engine), as for the GPU bundle.
ifeq ($(origin DNNL), undefined)
  DNNL := $(if $(wildcard /usr/include/oneapi/dnnl/dnnl.h),1,0)
endif
SAN     ?= 0
V       ?= 0
Q        = $(if $(filter 1,$(V)),,@)
BUILD   ?= $(if $(filter 1,$(SAN)),build-san,build)

CFLAGS  = -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror=implicit-function-declaration -Werror=int-conversion -fopenmp -Icore -Imodel -Ikernels/cpu -Iablate -Iprofile -Idb -Ireports
LDLIBS  = -lsqlite3 -lcjson -lm -fopenmp
ifeq ($(SAN),1)
  CFLAGS += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDLIBS += -fsanitize=address,undefined
endif

SRC = core/err.c core/fileio.c core/hash.c core/numfmt.c core/safetensors.c core/rng.c core/tensor.c \
      model/config.c model/unet.c model/weights.c model/singlefile.c model/inputs.c model/forward.c model/backend_cpu.c \
      ablate/plan.c ablate/candidates.c ablate/eval.c ablate/session.c ablate/agree.c \
      kernels/cpu/ops.c model/backend_fast.c profile/prof.c profile/noise.c \
      $(sort $(wildcard db/*.c)) $(sort $(wildcard reports/*.c)) \
      cli/main.c cli/bench.c cli/inspect.c cli/forward.c cli/plan.c cli/eval.c cli/prov.c cli/db.c cli/schedule.c cli/export.c cli/profile.c cli/report.c cli/agree.c
ifeq ($(DNNL),1)
  SRC += kernels/cpu/fastops.c kernels/dnnl/dnn.c
  CFLAGS += -DUNETLAB_DNNL=1 -Ikernels/dnnl
  LDLIBS += -ldnnl
endif
ifeq ($(CUDA),1)
  # The CUDA engine: kernels/cuda (our kernels), kernels/cudnn and
  # kernels/cublas (library wrappers), the CUDA backend and the CUPTI tracer.
  CUSRC = $(sort $(wildcard core/*.cu kernels/cuda/*.cu kernels/cudnn/*.cu kernels/cublas/*.cu model/*.cu profile/*.cu))
  SRC += $(sort $(wildcard profile/*_cuda.c))
  CFLAGS += -DUNETLAB_CUDA=1 -I$(CUDA_HOME)/include -Ikernels/cuda -Ikernels/cudnn -Ikernels/cublas
  # cudart is linked statically and everything else found through the rpath,
  # so that the carried build/ runs on the GPU machine as it is: $ORIGIN first
  # (libcjson.so.1 and libgomp.so.1 are copied beside the binary, since that
  # machine lacks them), then where CUDA 13 keeps cuBLASLt and CUPTI there.
  # cuDNN is in the default search path on both machines.
  RPATH = -Wl,-rpath,'$$ORIGIN' -Wl,-rpath,'$$ORIGIN/..' -Wl,-rpath,/usr/local/cuda/targets/x86_64-linux/lib \
          -Wl,-rpath,$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/extras/CUPTI/lib64
  LDLIBS += -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/extras/CUPTI/lib64 -lcudnn -lcublasLt -lcupti -lcudart_static \
            -ldl -lpthread -lrt -lstdc++ $(RPATH)
  NVFLAGS = -O3 -g -std=c++17 -DUNETLAB_CUDA=1 -Xcompiler -fopenmp -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 \
            -Xcompiler -Wall,-Wextra -Icore -Ikernels/cuda -Ikernels/cudnn -Ikernels/cublas -Ikernels/cpu -Imodel -Iprofile
  CUOBJ = $(patsubst %.cu,$(BUILD)/%.o,$(CUSRC))
  SHIPPED = $(BUILD)/libcjson.so.1 $(BUILD)/libgomp.so.1
else
  SRC += core/device_cpu.c
  CUOBJ =
  SHIPPED =
endif
OBJ = $(patsubst %.c,$(BUILD)/%.o,$(SRC)) $(BUILD)/presets.o $(CUOBJ)
LIBOBJ = $(filter-out $(BUILD)/cli/%,$(OBJ))
TESTS = test_safetensors test_config test_unet test_ops test_fastops test_fixtures test_db test_eval test_schedule test_profile test_report test_hostile test_agree test_singlefile
ifeq ($(CUDA),1)
  TESTS += $(basename $(notdir $(wildcard tests/test_cuda_*.c)))
endif
# test_cuda_emu runs the grid-stride kernels of kernels/cuda/ops_kernels.cuh
# on the CPU (kernels/cuda/emu.h): host C++ with the CUDA headers' host
# fp16/bf16 code and no CUDA runtime, so it is built wherever those headers
# are, CUDA=0 builds included.
EMU_CUDA_INC = $(patsubst %/cuda_fp16.h,%,$(firstword $(wildcard $(CUDA_HOME)/include/cuda_fp16.h /usr/local/cuda/include/cuda_fp16.h)))
# test_cuda_mma_layout checks the fragment layouts of the mma.sync attention
# kernel (kernels/cuda/attn_mma.h) against the PTX tables, and emulates the
# kernel warp by warp against a double-precision attention: same conditions.
ifneq ($(EMU_CUDA_INC),)
  TESTS += test_cuda_emu test_cuda_mma_layout
endif
TESTBIN = $(addprefix $(BUILD)/tests/,$(TESTS))

all: $(BUILD)/unetlab
.PHONY: all deps test demo fuzz clean info gpu-bundle

info:
	@echo "unetlab: CUDA=$(CUDA) ($(if $(NVCC),nvcc at $(NVCC),no nvcc found)), DNNL=$(DNNL), SAN=$(SAN), build dir $(BUILD)/"

$(BUILD)/unetlab: $(OBJ) | info $(SHIPPED)
	@echo "  LD      $@"
	$(Q)$(CC) -o $@ $(OBJ) $(LDLIBS)

$(BUILD)/%.o: %.c $(wildcard core/*.h model/*.h kernels/cpu/*.h kernels/dnnl/*.h ablate/*.h profile/*.h db/*.h reports/*.h cli/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# The fast kernels are written as plain loops for the vectoriser (-O3).
$(BUILD)/kernels/cpu/fastops.o: CFLAGS += -O3 -Wno-psabi
$(BUILD)/core/rng.o: CFLAGS += -O3 -fno-math-errno -Wno-psabi

# provenance: the commit and flags this binary was built from
GIT_DESC := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
$(BUILD)/cli/prov.o: CFLAGS += -DUNETLAB_GIT='"$(GIT_DESC)"' -DUNETLAB_BUILD_FLAGS='"CUDA=$(CUDA) DNNL=$(DNNL) SAN=$(SAN) $(CC)"'
$(BUILD)/cli/prov.o: $(wildcard .git/index)

$(BUILD)/%.o: %.cu $(wildcard core/*.h kernels/cuda/*.h kernels/cudnn/*.h kernels/cublas/*.h kernels/cpu/*.h model/*.h profile/*.h)
	@mkdir -p $(dir $@)
	@echo "  NVCC    $<"
	$(Q)$(NVCC) $(NVFLAGS) -c $< -o $@

# The shared libraries the GPU machine lacks, beside the binary (see RPATH).
$(BUILD)/lib%.so.1:
	@mkdir -p $(BUILD)
	$(Q)cp -L "$$($(CC) -print-file-name=lib$*.so.1 | grep / || ldconfig -p | awk '/lib$*\.so\.1 /{print $$NF; exit}')" $@

$(BUILD)/tools/embed: tools/embed.c
	@mkdir -p $(dir $@)
	$(CC) -O1 -o $@ $<

# The machine's GEMM ceiling through oneDNN (scripts/bench-cpu.sh runs it).
$(BUILD)/tools/gemm-rate: tools/gemm-rate.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -fopenmp -o $@ $< -ldnnl

$(BUILD)/presets.c: $(BUILD)/tools/embed $(sort $(wildcard presets/*.json))
	$(BUILD)/tools/embed $@ $(sort $(wildcard presets/*.json))

$(BUILD)/presets.o: $(BUILD)/presets.c
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h) $(LIBOBJ)
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	$(Q)$(CC) $(CFLAGS) -Itests $< $(LIBOBJ) -o $@ $(LDLIBS)

EMU_CXXFLAGS = -std=c++17 -O2 -g -Wall -Wextra -Wno-unknown-pragmas -fopenmp -Icore -Ikernels/cpu -Ikernels/cuda -Itests \
               -isystem $(EMU_CUDA_INC)
ifeq ($(SAN),1)
  EMU_CXXFLAGS += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
endif
EMU_OBJ = $(BUILD)/kernels/cpu/ops.o $(BUILD)/core/tensor.o $(BUILD)/core/err.o
$(BUILD)/tests/test_cuda_emu: tests/test_cuda_emu.cpp kernels/cuda/ops_kernels.cuh kernels/cuda/emu.h $(wildcard tests/*.h core/*.h kernels/cpu/*.h) $(EMU_OBJ)
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	$(Q)$(CXX) $(EMU_CXXFLAGS) $< $(EMU_OBJ) -o $@ -lm -fopenmp $(filter -fsanitize=%,$(LDLIBS)) $(RPATH)
$(BUILD)/tests/test_cuda_mma_layout: tests/test_cuda_mma_layout.cpp kernels/cuda/attn_mma.h $(wildcard core/*.h)
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	$(Q)$(CXX) $(EMU_CXXFLAGS) $< -o $@ -lm -fopenmp $(filter -fsanitize=%,$(LDLIBS)) $(RPATH)
# ops.cu includes ops_kernels.cuh (the .cu rule above lists only *.h)
$(BUILD)/kernels/cuda/ops.o: kernels/cuda/ops_kernels.cuh

# What a GPU machine needs, small enough to carry (the device tool's 64 MiB
# covers the tracked tree too): the binary and the GPU test programs without
# debug sections, and the shared libraries that machine lacks, in build/gpu/.
# Built with DNNL=0 in build-gpu/: that machine has no oneDNN (40 MB, too big
# to carry), so its CPU runs the reference engine; the GPU is what it checks.
# Run there: scripts/gpu-check.sh build/gpu
gpu-bundle:
	@$(MAKE) --no-print-directory DNNL=0 BUILD=build-gpu build-gpu/unetlab $(addprefix build-gpu/tests/,$(TESTS))
	@rm -rf $(BUILD)/gpu && mkdir -p $(BUILD)/gpu/tests
	strip --strip-debug -o $(BUILD)/gpu/unetlab build-gpu/unetlab
	for t in build-gpu/tests/test_cuda_*; do strip --strip-debug -o $(BUILD)/gpu/tests/$$(basename $$t) $$t; done
	cp build-gpu/libcjson.so.1 build-gpu/libgomp.so.1 $(BUILD)/gpu/
	@du -sh $(BUILD)/gpu

deps:
	@scripts/setup.sh

test: deps
	@$(MAKE) --no-print-directory $(BUILD)/unetlab $(TESTBIN)
	@tests/run.sh $(BUILD)

demo: deps
	@$(MAKE) --no-print-directory $(BUILD)/unetlab
	@scripts/demo.sh $(BUILD)

# Fuzz the readers of untrusted files and what checks them, FUZZ_SECONDS each
# (libFuzzer, clang, ASan + UBSan), every target seeded with small valid files
# (tests/fuzz-seeds/, presets and fixture configs): safetensors (the file
# format), config (config.json), plan (plan JSON and the removal it applies),
# inputs (inputs / calibration files against a model), weights (a checkpoint's
# tensors against the model its config describes). Corpora grow in build-fuzz/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = safetensors config plan inputs weights
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fopenmp=libgomp -Icore -Imodel -Iablate -Itests
FUZZ_CORE = core/err.c core/fileio.c core/hash.c core/rng.c core/tensor.c core/safetensors.c
FUZZ_SRC_safetensors = core/err.c core/fileio.c core/safetensors.c
FUZZ_SRC_config = core/err.c core/fileio.c model/config.c model/unet.c
FUZZ_SRC_plan = $(FUZZ_CORE) model/config.c model/unet.c ablate/plan.c
FUZZ_SRC_inputs = $(FUZZ_CORE) model/config.c model/inputs.c
FUZZ_SRC_weights = $(FUZZ_CORE) model/config.c model/unet.c model/weights.c model/singlefile.c
FUZZ_LEN_safetensors = 4096
FUZZ_LEN_config = 8192
FUZZ_LEN_plan = 4096
FUZZ_LEN_inputs = 4096
FUZZ_LEN_weights = 131072
fuzz: deps
	@for t in $(FUZZ_TARGETS); do mkdir -p build-fuzz/corpus-$$t; done
	$(foreach t,$(FUZZ_TARGETS),clang $(FUZZ_CFLAGS) $(FUZZ_SRC_$(t)) tests/fuzz_$(t).c -lcjson -lm -o build-fuzz/fuzz_$(t) &&) true
	i=0; for f in presets/*.json tests/fixtures/*/config.json; do i=$$((i+1)); cp $$f build-fuzz/corpus-config/seed$$i.json; done
	for t in safetensors plan inputs weights; do cp tests/fuzz-seeds/$$t/* build-fuzz/corpus-$$t/; done
	$(foreach t,$(FUZZ_TARGETS),build-fuzz/fuzz_$(t) -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_LEN_$(t)) -print_final_stats=1 build-fuzz/corpus-$(t) &&) true

clean:
	rm -rf build build-san build-fuzz build-gpu build-cpu build-ref
