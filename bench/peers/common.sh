# common.sh: what run.sh, fullsize.sh and layers.sh share (sourced; they set
# $raw, $out, $CNNC and $CC first).

# note SYSTEM REASON: a system (or one of its nets) is not available.
note() { printf '{"system": "%s", "error": "%s"}\n' "$1" "$(echo "$2" | tr -d '"\\' | tr '\n' ' ' | cut -c1-300)" >> "$raw/errors.jsonl"; }

# bench_net NET TAG: records NET's forward FLOPs (from --summary) and builds
# $out/cnnc_bench_NET against $out/libNET.a (compiled by the caller); logs
# in $raw/TAG.NET.log. Fails (with a note) when the build does.
bench_net() {
  flops=$("$CNNC" "examples/$1.cnn" --summary | sed -n 's/^forward: *\([0-9,]*\) FLOPs per example.*/\1/p' | tr -d ,)
  echo "{\"net\": \"$1\", \"forward_flops\": ${flops:-null}}" >> "$raw/flops.jsonl"
  if ! $CC -O2 -DNET="$1" -DNETU="$(echo "$1" | tr a-z A-Z)" -include "$out/$1.h" bench/peers/cnnc_bench.c \
       "$out/lib$1.a" -fopenmp -lm -o "$out/cnnc_bench_$1" 2> "$raw/$2.$1.log"; then
    note cnnc "$1: building cnnc_bench failed: $(head -1 "$raw/$2.$1.log")"
    return 1
  fi
}

# openblas_core: the OPENBLAS_CORETYPE for the torch+OpenBLAS peer, from this
# CPU's features: SkylakeX (its AVX-512 kernels; OpenBLAS 0.3.21 knows
# neither Zen 4 nor Zen 5) where the CPU has AVX-512, else Haswell (AVX2 and
# FMA, the kernels it also picks for Zen 1-3). A core type the CPU cannot run
# would stop torch with an illegal instruction.
openblas_core() {
  if grep -q '^flags.* avx512f' /proc/cpuinfo; then echo SkylakeX; else echo Haswell; fi
}
