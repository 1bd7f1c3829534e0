# cnnc: an ahead-of-time compiler for neural networks.
#   make          build bin/cnnc and the runtime
#   make check    run every test
#   make demo     compile an example and run it
#   make clean

CC       := clang-19
LLVM_CONFIG := llvm-config-19
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE
BUILD    := build
GEN      := $(BUILD)/gen

COMPILER_SRC := $(wildcard compiler/*.c)
# the runtime's safetensors reader, shared by the compiler's --weights (weights.c)
COMPILER_RT  := error crc32 safetensors
COMPILER_OBJ := $(COMPILER_SRC:compiler/%.c=$(BUILD)/compiler/%.o) $(BUILD)/gen/parser.o $(BUILD)/gen/lexer.o \
                $(COMPILER_RT:%=$(BUILD)/compiler/rt/%.o)
FRONT_OBJ    := $(filter-out $(BUILD)/compiler/main.o,$(COMPILER_OBJ))
INC          := -Icompiler -I$(GEN)

.PHONY: all check demo bench bench-mpi clean deps fuzz fuzz-frontend fuzz-tunecache
all: bin/cnnc runtime

LLVM_CFLAGS := $(shell $(LLVM_CONFIG) --cflags 2>/dev/null | sed 's/-std=[^ ]*//')
LLVM_LIBS   := $(shell $(LLVM_CONFIG) --ldflags 2>/dev/null) $(shell $(LLVM_CONFIG) --libs 2>/dev/null)
RT_CC       := cc

bin/cnnc: $(COMPILER_OBJ)
	@mkdir -p bin
	$(CC) $(CFLAGS) -o $@ $^ $(LLVM_LIBS) -lm

$(BUILD)/compiler/llvm.o: CFLAGS += $(LLVM_CFLAGS)
$(BUILD)/compiler/link.o: CFLAGS += -DCNNC_CC='"$(RT_CC)"'

$(BUILD)/compiler/%.o: compiler/%.c compiler/cnnc.h $(GEN)/parser.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INC) -c -o $@ $<

$(BUILD)/compiler/weights.o: runtime/cnnrt.h
$(BUILD)/compiler/rt/%.o: runtime/%.c runtime/cnnrt.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(GEN)/parser.c $(GEN)/parser.h: grammar/parser.y
	@mkdir -p $(GEN)
	bison -Wall -Werror --defines=$(GEN)/parser.h -o $(GEN)/parser.c $<

$(GEN)/lexer.c: grammar/lexer.l
	@mkdir -p $(GEN)
	flex -o $@ $<

$(GEN)/%.o: $(GEN)/%.c $(GEN)/parser.h compiler/cnnc.h
	$(CC) $(CFLAGS) -Wno-sign-compare -Wno-unused-function -Wno-unused-but-set-variable $(INC) -c -o $@ $<

# ---- setup ---------------------------------------------------------------
# Debian packages the build, the tests and the demo need; apt-get only runs
# for what is missing.
DEBS := clang-19 llvm-19-dev libomp-19-dev libclang-rt-19-dev flex bison make \
        libcriterion-dev zlib1g-dev libpng-dev libjpeg62-turbo-dev graphviz dataset-fashion-mnist python3 \
        libopenmpi-dev openmpi-bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

deps:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

clean:
	rm -rf $(BUILD) bin lib

# ---- the runtime -----------------------------------------------------------
# libcnnrt.a: what every generated program and library needs (libc, libm, OpenMP).
# libcnnrt_main.a: the generated executables' commands, data sets and images
# (adds zlib, libpng and libjpeg). The _asan variants are for the sanitizer tests.
RT_CFLAGS := -O2 -g -std=c11 -fPIC -fopenmp -Wall -Wextra -D_GNU_SOURCE
RT_CORE   := error crc32 safetensors parallel buckets net
RT_PROG   := idx csv image jpeg preprocess main train
RT_LIBS   := lib/libcnnrt.a lib/libcnnrt_main.a lib/libcnnrt_asan.a lib/libcnnrt_main_asan.a

# libcnnrt_mpi.a: mpi.c, the main() of `cnnc --mpi` builds (Open MPI), built
# with mpicc when there is one: nothing else depends on MPI.
MPICC     := mpicc
RT_MPI    := $(if $(shell command -v $(MPICC) 2>/dev/null),lib/libcnnrt_mpi.a)

.PHONY: runtime
runtime: $(RT_LIBS) $(RT_MPI)

$(BUILD)/rt/mpi.o: runtime/mpi.c runtime/cnnrt.h
	@mkdir -p $(dir $@)
	OMPI_CC=$(RT_CC) $(MPICC) $(RT_CFLAGS) -c -o $@ $<

lib/libcnnrt_mpi.a: $(BUILD)/rt/mpi.o
	@mkdir -p lib
	rm -f $@ && ar rcs $@ $^

$(BUILD)/rt/%.o: runtime/%.c runtime/cnnrt.h
	@mkdir -p $(dir $@)
	$(RT_CC) $(RT_CFLAGS) -c -o $@ $<

$(BUILD)/rt-asan/%.o: runtime/%.c runtime/cnnrt.h
	@mkdir -p $(dir $@)
	$(RT_CC) $(RT_CFLAGS) -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -c -o $@ $<

lib/libcnnrt.a: $(RT_CORE:%=$(BUILD)/rt/%.o)
lib/libcnnrt_main.a: $(RT_PROG:%=$(BUILD)/rt/%.o)
lib/libcnnrt_asan.a: $(RT_CORE:%=$(BUILD)/rt-asan/%.o)
lib/libcnnrt_main_asan.a: $(RT_PROG:%=$(BUILD)/rt-asan/%.o)
$(RT_LIBS):
	@mkdir -p lib
	rm -f $@ && ar rcs $@ $^

# ---- tests -------------------------------------------------------------------
# Criterion unit tests link the compiler's objects without main.o.
UNIT_SRC := $(wildcard tests/unit/*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

$(BUILD)/tests/%: tests/unit/%.c $(FRONT_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INC) -o $@ $< $(FRONT_OBJ) $(LLVM_LIBS) -lcriterion -lm

# make demo: compile the LeNet example and train it on Fashion-MNIST with its
# own settings (DEMO_FLAGS adds flags, e.g. DEMO_FLAGS="--epochs 3").
FMNIST := /usr/share/datasets/fashion-mnist
DEMO_FLAGS ?=
demo: deps
	$(MAKE) all
	@mkdir -p $(BUILD)/demo
	bin/cnnc examples/lenet.cnn -o $(BUILD)/demo/lenet -v
	$(BUILD)/demo/lenet train \
	  --train $(FMNIST)/train-images-idx3-ubyte.gz $(FMNIST)/train-labels-idx1-ubyte.gz \
	  --test $(FMNIST)/t10k-images-idx3-ubyte.gz $(FMNIST)/t10k-labels-idx1-ubyte.gz \
	  --save $(BUILD)/demo/lenet.ckpt.safetensors --log $(BUILD)/demo/metrics.csv \
	  --plot $(BUILD)/demo/curves.svg $(DEMO_FLAGS)
	@echo "weights: $(BUILD)/demo/lenet.ckpt.safetensors, curves: $(BUILD)/demo/curves.svg"

# make bench: cnnc against PyTorch and ONNX Runtime on this machine, and the
# fp32 peak (bench/peers/run.sh writes bench/RESULTS.md). Needs Debian's
# python3-torch and Node.js (npm fetches onnxruntime-node into bench/peers).
# make bench: cnnc against PyTorch and ONNX Runtime (bench/RESULTS.md: the small
# nets, the five full-size examples, their 3x3 convolutions one at a time;
# about 36 minutes, bounded by bench/peers/run.sh --budget), then MPI.
bench: deps
	@missing=$$(for p in python3-torch python3-torchvision; do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  [ -z "$$missing" ] || { $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; }
	@command -v npm >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends nodejs npm; }
	$(MAKE) all
	sh bench/peers/run.sh
	sh bench/mpi/run.sh

# data-parallel training over Open MPI against one process (bench/MPI_RESULTS.md)
bench-mpi: all
	sh bench/mpi/run.sh

# compile time of the full-size examples and of ResNet-18/34/50 (docs/compiler.md)
.PHONY: bench-compile
bench-compile: deps
	@[ -x /usr/bin/time ] || { $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends time; }
	$(MAKE) all
	sh bench/compile_time.sh

# examples/imagenet_classes.txt, the class names of the full-size examples'
# data blocks: the 1000 ImageNet categories in torchvision's order, one a
# line, from Debian's python3-torchvision (_IMAGENET_CATEGORIES in
# torchvision/models/_meta.py, which its pretrained weights' metadata use;
# made from 0.14.1). The file is committed; `make imagenet-classes` remakes it.
.PHONY: imagenet-classes
imagenet-classes:
	/usr/bin/python3 -c 'from torchvision.models._meta import _IMAGENET_CATEGORIES as c; \
	  assert len(c) == 1000 and all(n and "\n" not in n for n in c); print("\n".join(c))' \
	  >examples/imagenet_classes.txt.tmp && mv examples/imagenet_classes.txt.tmp examples/imagenet_classes.txt

# make check: install what is missing, build, then every suite (tests/check.sh).
check: deps
	$(MAKE) all
	sh tests/check.sh

.PHONY: check-unit check-golden check-runtime check-reference check-reference-asan check-reference-nofuse
.PHONY: check-reference-tuned check-reference-avx2 check-tune
.PHONY: check-train check-embed check-weights check-predict check-fuzz check-robustness check-mpi check-fullsize
check-unit: $(UNIT_BIN)
	@for t in $(UNIT_BIN); do echo "== $$t"; $$t --jobs 2 || exit 1; done

check-golden: bin/cnnc
	sh tests/run_golden.sh bin/cnnc

# the runtime's readers and writers, with AddressSanitizer and UBSan
SAN := -fsanitize=address,undefined -fno-sanitize-recover=all
$(BUILD)/tests/test_runtime: tests/runtime/test_runtime.c $(wildcard runtime/*.c) runtime/cnnrt.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O1 -g -D_GNU_SOURCE -fopenmp $(SAN) -Iruntime -o $@ tests/runtime/test_runtime.c \
	  $(filter-out runtime/main.c runtime/train.c runtime/mpi.c,$(wildcard runtime/*.c)) -lcriterion -ljpeg -lz -lpng -lm

check-runtime: $(BUILD)/tests/test_runtime
	$(BUILD)/tests/test_runtime --jobs 2

check-reference: all
	sh tests/reference/run.sh

check-reference-asan: all
	sh tests/reference/run.sh --sanitize

# the same nets compiled without loop fusion: both builds must match PyTorch
check-reference-nofuse: all
	sh tests/reference/run.sh --no-fuse

check-reference-tuned: all
	sh tests/reference/run.sh --tune

check-reference-avx2: all
	sh tests/reference/run.sh --avx2

check-tune: all
	sh tests/tune/run.sh

# the full-size examples against torchvision (installs python3-torchvision)
check-fullsize: all
	sh tests/fullsize/run.sh

check-train: all
	sh tests/runtime/test_train.sh
	sh tests/runtime/test_train.sh --asan
	sh tests/training/run.sh

check-embed: all
	sh tests/embed/run.sh

# weights built into the output (cnnc --weights FILE), with ASan
check-weights: all
	sh tests/weights/run.sh

# data-parallel training over Open MPI (cnnc --mpi), and examples/embed_mpi
check-mpi: all
	sh tests/mpi/run.sh

check-predict: all
	sh tests/program/test_predict.sh
	sh tests/program/test_photo.sh
	sh tests/program/test_examples.sh
	sh tests/program/test_bench_info.sh

check-fuzz:
	$(MAKE) fuzz-frontend FUZZ_SECONDS=60
	$(MAKE) fuzz-tunecache FUZZ_SECONDS=30
	$(MAKE) fuzz-runtime FUZZ_SECONDS=30

check-robustness: all
	sh tests/robustness/run.sh

# ---- fuzzing -------------------------------------------------------------
# The front end built with libFuzzer, AddressSanitizer and UBSan.
FUZZ_FLAGS := -O1 -g -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_SECONDS ?= 60
# everything up to the loop IR: the fuzzer does not reach LLVM or the linker
FRONT_SRC := $(filter-out compiler/main.c compiler/llvm.c compiler/link.c compiler/tune.c compiler/weights.c,$(COMPILER_SRC)) $(GEN)/parser.c $(GEN)/lexer.c

$(BUILD)/fuzz/fuzz_frontend: tests/fuzz/fuzz_frontend.c $(FRONT_SRC) compiler/cnnc.h $(GEN)/parser.h
	@mkdir -p $(dir $@)
	$(CC) $(FUZZ_FLAGS) $(INC) -Wno-unused-function -o $@ tests/fuzz/fuzz_frontend.c $(FRONT_SRC)

# make fuzz: every fuzzer in turn, FUZZ_SECONDS each (make fuzz FUZZ_SECONDS=600
# for ten minutes each); fuzz-frontend, fuzz-tunecache, fuzz-runtime run one family
fuzz:
	$(MAKE) --no-print-directory fuzz-frontend
	$(MAKE) --no-print-directory fuzz-tunecache
	$(MAKE) --no-print-directory fuzz-runtime

fuzz-frontend: $(BUILD)/fuzz/fuzz_frontend
	@mkdir -p $(BUILD)/fuzz/corpus-frontend
	cp examples/*.cnn tests/golden/*.cnn $(BUILD)/fuzz/corpus-frontend/ 2>/dev/null || true
	$(BUILD)/fuzz/fuzz_frontend -max_total_time=$(FUZZ_SECONDS) -timeout=5 -rss_limit_mb=2048 \
	  -max_len=8192 -dict=tests/fuzz/cnn.dict -print_final_stats=1 \
	  $(BUILD)/fuzz/corpus-frontend tests/fuzz/regressions

# the tuning cache's reader and writer (compiler/tune.c, without LLVM)
$(BUILD)/fuzz/fuzz_tunecache: tests/fuzz/fuzz_tunecache.c compiler/tune.c compiler/util.c compiler/diag.c compiler/cnnc.h
	@mkdir -p $(dir $@)
	$(CC) $(FUZZ_FLAGS) $(INC) -o $@ tests/fuzz/fuzz_tunecache.c compiler/tune.c compiler/util.c compiler/diag.c -lm

fuzz-tunecache: $(BUILD)/fuzz/fuzz_tunecache
	@mkdir -p $(BUILD)/fuzz/corpus-tunecache
	cp tests/fuzz/corpus/tunecache/* $(BUILD)/fuzz/corpus-tunecache/
	$(BUILD)/fuzz/fuzz_tunecache -max_total_time=$(FUZZ_SECONDS) -timeout=5 -rss_limit_mb=2048 \
	  -max_len=4096 -dict=tests/fuzz/tunecache.dict -print_final_stats=1 -close_fd_mask=2 \
	  -artifact_prefix=$(BUILD)/fuzz/tunecache- $(BUILD)/fuzz/corpus-tunecache

# the runtime's readers under libFuzzer (make fuzz-runtime)
include tests/fuzz/fuzz.mk
