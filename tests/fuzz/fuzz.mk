# ---- fuzzing the runtime's readers -----------------------------------------
# tests/fuzz/fuzz.mk, included by the Makefile. One libFuzzer target per
# reader of the runtime, each built with AddressSanitizer and UBSan from the
# runtime sources it needs:
#   fuzz_safetensors  rt_st_read_mem, and a write/read-back round trip
#   fuzz_idx          rt_idx_read, rt_idx_load: plain and gzip IDX
#   fuzz_csv          rt_csv_load
#   fuzz_image        rt_image_read (PGM/PPM, PNG, JPEG, IDX), rt_image_to_input,
#                     rt_image_prepare
# `make fuzz-runtime` replays each target's regression inputs
# (tests/fuzz/regressions/NAME/: every input that once failed), then fuzzes
# it for FUZZ_SECONDS from a copy of its seed corpus (tests/fuzz/corpus/NAME/,
# copied to $(BUILD)/fuzz/corpus-NAME/ so the repository is not modified).
# A finding stops the run and is left in $(BUILD)/fuzz/NAME-crash-...; once
# fixed, copy it into tests/fuzz/regressions/NAME/.
#   make fuzz-runtime FUZZ_SECONDS=600      (ten minutes each)
#   make fuzz-runtime FUZZ_RT=csv           (one target)
# The seed corpora come from tests/fuzz/make_corpus.py.

FUZZ_CC       ?= clang-19
FUZZ_SECONDS  ?= 30
FUZZ_RT       ?= safetensors idx csv image
FUZZ_RT_FLAGS := -O1 -g -std=c11 -D_GNU_SOURCE -fopenmp -Wall -Wextra -Iruntime -Itests/fuzz \
                 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_RT_LIBS  := -ljpeg -lz -lpng -lm
FUZZ_RT_RUN   := -timeout=5 -rss_limit_mb=2048 -print_final_stats=1

# the runtime sources each target links (rt_data_* live in idx.c)
FUZZ_SRC_safetensors := error crc32 safetensors
FUZZ_SRC_idx         := error idx
FUZZ_SRC_csv         := error idx csv
FUZZ_SRC_image       := error idx image jpeg preprocess
# the longest input tried: room for a few tensors, a few images' pixels
FUZZ_LEN_safetensors := 4096
FUZZ_LEN_idx         := 4096
FUZZ_LEN_csv         := 4096
FUZZ_LEN_image       := 8192
FUZZ_DICT_safetensors := -dict=tests/fuzz/safetensors.dict
FUZZ_DICT_image       := -dict=tests/fuzz/image.dict

# fuzz_NAME, and fuzz-runtime-NAME: its regression inputs replayed (libFuzzer
# runs the files it is given), then FUZZ_SECONDS of fuzzing from its corpus
define FUZZ_RT_RULE
$(BUILD)/fuzz/fuzz_$(1): tests/fuzz/fuzz_$(1).c tests/fuzz/fuzz_file.h runtime/cnnrt.h \
                         $(FUZZ_SRC_$(1):%=runtime/%.c)
	@mkdir -p $$(dir $$@)
	$(FUZZ_CC) $(FUZZ_RT_FLAGS) -o $$@ tests/fuzz/fuzz_$(1).c $(FUZZ_SRC_$(1):%=runtime/%.c) \
	  $(FUZZ_RT_LIBS)

.PHONY: fuzz-runtime-$(1)
fuzz-runtime-$(1): $(BUILD)/fuzz/fuzz_$(1)
	@files=$$$$(find tests/fuzz/regressions/$(1) -type f ! -name '.*' 2>/dev/null | sort); \
	if [ -n "$$$$files" ]; then \
	  echo "== fuzz_$(1): replaying" $$$$(echo "$$$$files" | wc -l) "regression inputs"; \
	  $$< $(FUZZ_RT_RUN) $$$$files >$(BUILD)/fuzz/regressions-$(1).log 2>&1 || \
	    { tail -n 40 $(BUILD)/fuzz/regressions-$(1).log; exit 1; }; \
	fi
	@echo "== fuzz_$(1): $(FUZZ_SECONDS) s"
	@mkdir -p $(BUILD)/fuzz/corpus-$(1)
	@cp tests/fuzz/corpus/$(1)/* $(BUILD)/fuzz/corpus-$(1)/
	@$$< -max_total_time=$(FUZZ_SECONDS) $(FUZZ_RT_RUN) -max_len=$(FUZZ_LEN_$(1)) $(FUZZ_DICT_$(1)) \
	  -artifact_prefix=$(BUILD)/fuzz/$(1)- $(BUILD)/fuzz/corpus-$(1) >$(BUILD)/fuzz/fuzz-$(1).log 2>&1 || \
	  { tail -n 60 $(BUILD)/fuzz/fuzz-$(1).log; \
	    echo "fuzz_$(1): a finding, in $(BUILD)/fuzz/$(1)-*; log $(BUILD)/fuzz/fuzz-$(1).log"; exit 1; }
	@grep -E '^stat::number_of_executed_units|^Done' $(BUILD)/fuzz/fuzz-$(1).log
endef
$(foreach t,safetensors idx csv image,$(eval $(call FUZZ_RT_RULE,$(t))))

# one fuzzer at a time, in turn
.PHONY: fuzz-runtime
fuzz-runtime: $(FUZZ_RT:%=$(BUILD)/fuzz/fuzz_%)
	@for t in $(FUZZ_RT); do \
	  $(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) fuzz-runtime-$$t || exit 1; \
	done
