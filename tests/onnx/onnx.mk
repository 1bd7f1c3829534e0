# ---- ONNX conformance and fuzzing ------------------------------------------
# tests/onnx/onnx.mk, included by the Makefile.
#   make check-conformance   ONNX's operator tests (Debian's libonnx-testdata)
#                            through cnnc: tests/onnx/conformance.sh, with
#                            build/tests/conform (tests/onnx/conform.c) to
#                            bind inputs, write them as safetensors and compare

ONNX_TESTDATA := /usr/share/libonnx-testdata/data

$(BUILD)/tests/conform: tests/onnx/conform.c $(GEN)/onnx.pb-c.c $(GEN)/onnx.pb-c.h runtime/cnnrt.h \
                        runtime/safetensors.c runtime/error.c runtime/crc32.c
	@mkdir -p $(dir $@)
	$(CC) -O1 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-function -Iruntime -I$(GEN) -o $@ \
	  tests/onnx/conform.c $(GEN)/onnx.pb-c.c runtime/safetensors.c runtime/error.c runtime/crc32.c \
	  $(PROTO_LIBS) -lm

.PHONY: check-conformance
check-conformance: all $(BUILD)/tests/conform
	sh tests/onnx/conformance.sh
