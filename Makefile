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

.PHONY: all check demo clean deps
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

clean:
	rm -rf $(BUILD) bin
