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
COMPILER_OBJ := $(COMPILER_SRC:compiler/%.c=$(BUILD)/compiler/%.o) $(BUILD)/gen/parser.o $(BUILD)/gen/lexer.o
FRONT_OBJ    := $(filter-out $(BUILD)/compiler/main.o,$(COMPILER_OBJ))
INC          := -Icompiler -I$(GEN)

.PHONY: all check demo clean deps fuzz
all: bin/cnnc

bin/cnnc: $(COMPILER_OBJ)
	@mkdir -p bin
	$(CC) $(CFLAGS) -o $@ $^ -lm

$(BUILD)/compiler/%.o: compiler/%.c compiler/cnnc.h $(GEN)/parser.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INC) -c -o $@ $<

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
        libcriterion-dev zlib1g-dev libpng-dev graphviz dataset-fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

deps:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

clean:
	rm -rf $(BUILD) bin

# ---- tests -------------------------------------------------------------------
# Criterion unit tests link the compiler's objects without main.o.
UNIT_SRC := $(wildcard tests/unit/*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

$(BUILD)/tests/%: tests/unit/%.c $(FRONT_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INC) -o $@ $< $(FRONT_OBJ) -lcriterion -lm

.PHONY: check-unit check-golden
check-unit: $(UNIT_BIN)
	@for t in $(UNIT_BIN); do echo "== $$t"; $$t --jobs 2 || exit 1; done

check-golden: bin/cnnc
	sh tests/run_golden.sh bin/cnnc

# ---- fuzzing -------------------------------------------------------------
# The front end built with libFuzzer, AddressSanitizer and UBSan.
FUZZ_FLAGS := -O1 -g -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_SECONDS ?= 60
FRONT_SRC := $(filter-out compiler/main.c,$(COMPILER_SRC)) $(GEN)/parser.c $(GEN)/lexer.c

$(BUILD)/fuzz/fuzz_frontend: tests/fuzz/fuzz_frontend.c $(FRONT_SRC) compiler/cnnc.h $(GEN)/parser.h
	@mkdir -p $(dir $@)
	$(CC) $(FUZZ_FLAGS) $(INC) -Wno-unused-function -o $@ tests/fuzz/fuzz_frontend.c $(FRONT_SRC)

fuzz: $(BUILD)/fuzz/fuzz_frontend
	@mkdir -p $(BUILD)/fuzz/corpus-frontend
	cp examples/*.cnn tests/golden/*.cnn $(BUILD)/fuzz/corpus-frontend/ 2>/dev/null || true
	$(BUILD)/fuzz/fuzz_frontend -max_total_time=$(FUZZ_SECONDS) -timeout=5 -rss_limit_mb=2048 \
	  -max_len=8192 -dict=tests/fuzz/cnn.dict -print_final_stats=1 \
	  $(BUILD)/fuzz/corpus-frontend tests/fuzz/regressions
