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
SAN     ?= 0
V       ?= 0
Q        = $(if $(filter 1,$(V)),,@)
BUILD   ?= $(if $(filter 1,$(SAN)),build-san,build)

CFLAGS  = -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -fopenmp -Icore -Imodel -Ikernels/cpu -Iablate -Iprofile -Idb -Ireports
LDLIBS  = -lsqlite3 -lcjson -lm -fopenmp
ifeq ($(SAN),1)
  CFLAGS += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDLIBS += -fsanitize=address,undefined
endif

SRC = core/err.c core/fileio.c core/hash.c core/numfmt.c core/safetensors.c core/rng.c core/tensor.c \
      model/config.c model/unet.c model/weights.c model/forward.c \
      ablate/plan.c ablate/candidates.c ablate/eval.c ablate/session.c \
      kernels/cpu/ops.c profile/prof.c \
      db/db.c reports/report.c \
      cli/main.c cli/inspect.c cli/forward.c cli/plan.c cli/eval.c cli/prov.c cli/db.c cli/schedule.c cli/export.c cli/profile.c cli/report.c
ifeq ($(CUDA),1)
  CFLAGS += -DUNETLAB_CUDA=1 -I$(CUDA_HOME)/include
  # cudart is linked statically so that the carried build/ runs on the GPU
  # machine as it is; the driver (libcuda) is loaded at run time.
  LDLIBS += -L$(CUDA_HOME)/lib64 -lcudart_static -ldl -lpthread -lrt
  CUOBJ = $(BUILD)/core/device_cuda.o
else
  SRC += core/device_cpu.c
  CUOBJ =
endif
OBJ = $(patsubst %.c,$(BUILD)/%.o,$(SRC)) $(BUILD)/presets.o $(CUOBJ)
LIBOBJ = $(filter-out $(BUILD)/cli/%,$(OBJ))
TESTS = test_safetensors test_config test_unet test_ops test_fixtures test_db test_eval test_schedule test_profile test_report
TESTBIN = $(addprefix $(BUILD)/tests/,$(TESTS))

all: $(BUILD)/unetlab
.PHONY: all deps test demo fuzz clean info

info:
	@echo "unetlab: CUDA=$(CUDA) ($(if $(NVCC),nvcc at $(NVCC),no nvcc found)), SAN=$(SAN), build dir $(BUILD)/"

$(BUILD)/unetlab: $(OBJ) | info
	@echo "  LD      $@"
	$(Q)$(CC) -o $@ $(OBJ) $(LDLIBS)

$(BUILD)/%.o: %.c $(wildcard core/*.h model/*.h kernels/cpu/*.h ablate/*.h profile/*.h db/*.h reports/*.h cli/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# provenance: the commit and flags this binary was built from
GIT_DESC := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
$(BUILD)/cli/prov.o: CFLAGS += -DUNETLAB_GIT='"$(GIT_DESC)"' -DUNETLAB_BUILD_FLAGS='"CUDA=$(CUDA) SAN=$(SAN) $(CC)"'
$(BUILD)/cli/prov.o: $(wildcard .git/index)

$(BUILD)/core/device_cuda.o: core/device_cuda.cu core/device.h
	@mkdir -p $(dir $@)
	@echo "  NVCC    $<"
	$(Q)$(NVCC) -O2 -Icore -c $< -o $@

$(BUILD)/tools/embed: tools/embed.c
	@mkdir -p $(dir $@)
	$(CC) -O1 -o $@ $<

$(BUILD)/presets.c: $(BUILD)/tools/embed $(sort $(wildcard presets/*.json))
	$(BUILD)/tools/embed $@ $(sort $(wildcard presets/*.json))

$(BUILD)/presets.o: $(BUILD)/presets.c
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/tests/%: tests/%.c tests/test.h $(LIBOBJ)
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	$(Q)$(CC) $(CFLAGS) -Itests $< $(LIBOBJ) -o $@ $(LDLIBS)

deps:
	@scripts/setup.sh

test: deps
	@$(MAKE) --no-print-directory $(BUILD)/unetlab $(TESTBIN)
	@tests/run.sh $(BUILD)

demo: deps
	@$(MAKE) --no-print-directory $(BUILD)/unetlab
	@scripts/demo.sh $(BUILD)

# Fuzz the two readers of untrusted files for FUZZ_SECONDS each (libFuzzer, clang).
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Icore -Imodel
fuzz: deps
	@mkdir -p build-fuzz/corpus-st build-fuzz/corpus-config
	clang $(FUZZ_CFLAGS) core/err.c core/safetensors.c tests/fuzz_safetensors.c -lcjson -o build-fuzz/fuzz_safetensors
	clang $(FUZZ_CFLAGS) core/err.c core/fileio.c model/config.c model/unet.c tests/fuzz_config.c -lcjson -lm -o build-fuzz/fuzz_config
	i=0; for f in presets/*.json tests/fixtures/*/config.json; do i=$$((i+1)); cp $$f build-fuzz/corpus-config/seed$$i.json; done
	build-fuzz/fuzz_safetensors -max_total_time=$(FUZZ_SECONDS) -max_len=4096 build-fuzz/corpus-st
	build-fuzz/fuzz_config -max_total_time=$(FUZZ_SECONDS) -max_len=8192 build-fuzz/corpus-config

clean:
	rm -rf build build-san build-fuzz
