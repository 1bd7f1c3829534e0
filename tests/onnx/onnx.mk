# ---- ONNX conformance and fuzzing ------------------------------------------
# tests/onnx/onnx.mk, included by the Makefile.
#   make check-conformance   ONNX's operator tests (Debian's libonnx-testdata)
#                            through cnnc: tests/onnx/conformance.sh, with
#                            build/tests/conform (tests/onnx/conform.c) to
#                            bind inputs, write them as safetensors and compare
#   make fuzz-onnx           the ONNX front end under libFuzzer for
#                            FUZZ_SECONDS (make fuzz-onnx FUZZ_SECONDS=600),
#                            seeded with libonnx-testdata's models (and, when
#                            check-conformance and check-onnx have left them
#                            in build/, its models with their inputs bound and
#                            tests/onnx's small and bad models), after
#                            replaying tests/fuzz/regressions/onnx/ (every
#                            input that once failed). A finding stops the run
#                            and is left in build/fuzz/onnx-crash-...

ONNX_TESTDATA := /usr/share/libonnx-testdata/data

$(BUILD)/tests/conform: tests/onnx/conform.c $(GEN)/onnx.pb-c.c $(GEN)/onnx.pb-c.h runtime/cnnrt.h \
                        runtime/safetensors.c runtime/error.c runtime/crc32.c
	@mkdir -p $(dir $@)
	$(CC) -O1 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-function -Iruntime -I$(GEN) -o $@ \
	  tests/onnx/conform.c $(GEN)/onnx.pb-c.c runtime/safetensors.c runtime/error.c runtime/crc32.c \
	  $(PROTO_LIBS) -lm

.PHONY: check-conformance fuzz-onnx
check-conformance: all $(BUILD)/tests/conform
	sh tests/onnx/conformance.sh

$(BUILD)/fuzz/fuzz_onnx: tests/fuzz/fuzz_onnx.c $(FRONT_SRC) compiler/cnnc.h $(GEN)/parser.h $(GEN)/onnx.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(FUZZ_FLAGS) $(INC) -Wno-unused-function -o $@ tests/fuzz/fuzz_onnx.c $(FRONT_SRC) $(PROTO_LIBS)

FUZZ_ONNX_RUN := -timeout=10 -rss_limit_mb=2048 -print_final_stats=1

fuzz-onnx: $(BUILD)/fuzz/fuzz_onnx
	@files=$$(find tests/fuzz/regressions/onnx -type f ! -name '.*' 2>/dev/null | sort); \
	if [ -n "$$files" ]; then \
	  echo "== fuzz_onnx: replaying" $$(echo "$$files" | wc -l) "regression inputs"; \
	  $< $(FUZZ_ONNX_RUN) $$files >$(BUILD)/fuzz/regressions-onnx.log 2>&1 || \
	    { tail -n 40 $(BUILD)/fuzz/regressions-onnx.log; exit 1; }; \
	fi
	@mkdir -p $(BUILD)/fuzz/corpus-onnx
	@for m in $(ONNX_TESTDATA)/node/*/model.onnx $(ONNX_TESTDATA)/pytorch-*/*/model.onnx \
	          $(ONNX_TESTDATA)/simple/*/model.onnx; do \
	  [ -f "$$m" ] && cp "$$m" $(BUILD)/fuzz/corpus-onnx/$$(basename $$(dirname $$m)).onnx; \
	done; \
	for m in $(BUILD)/conformance/*/*/model.onnx; do \
	  [ -f "$$m" ] && cp "$$m" $(BUILD)/fuzz/corpus-onnx/bound.$$(basename $$(dirname $$(dirname $$m))).onnx; \
	done; \
	for m in $(BUILD)/onnx/ops/*.onnx $(BUILD)/onnx/bad/*.onnx; do \
	  [ -f "$$m" ] && [ $$(stat -c %s "$$m") -le 16384 ] && cp "$$m" $(BUILD)/fuzz/corpus-onnx/$$(basename $$(dirname $$m)).$$(basename $$m); \
	done; echo "== fuzz_onnx: $(FUZZ_SECONDS) s from" $$(ls $(BUILD)/fuzz/corpus-onnx | wc -l) "inputs"
	@$< -max_total_time=$(FUZZ_SECONDS) $(FUZZ_ONNX_RUN) -max_len=16384 -dict=tests/fuzz/onnx.dict \
	  -artifact_prefix=$(BUILD)/fuzz/onnx- $(BUILD)/fuzz/corpus-onnx >$(BUILD)/fuzz/fuzz-onnx.log 2>&1 || \
	  { tail -n 60 $(BUILD)/fuzz/fuzz-onnx.log; \
	    echo "fuzz_onnx: a finding, in $(BUILD)/fuzz/onnx-*; log $(BUILD)/fuzz/fuzz-onnx.log"; exit 1; }
	@grep -E '^stat::number_of_executed_units|^stat::peak_rss|^Done|INITED|DONE' $(BUILD)/fuzz/fuzz-onnx.log
