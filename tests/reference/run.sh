#!/bin/sh
# Compiles every reference net (tests/reference/manifest.txt) to a library and
# an executable and checks both against PyTorch's outputs (check_net.c).
#   sh tests/reference/run.sh [--sanitize | --no-fuse | --tune | --avx2] [NET...]
# With --sanitize the generated code is built with AddressSanitizer and the
# runtime and harness with AddressSanitizer and UBSan; with --no-fuse the nets
# are compiled without loop fusion (both builds must match PyTorch); with
# --tune each library is compiled with --tune (a 300 ms budget) and each
# executable with the tuning cache that wrote; with --avx2 for another
# machine: x86-64-v3 (AVX2, no AVX-512: the GEMMs' default tiles for 16
# registers; this machine must have AVX2) with a 16 KiB L2 (CNNC_L2_BYTES),
# so that every convolution's im2col is built in chunks of rows. With
# CNNC_CONV=im2col or winograd set, every convolution that can takes that
# algorithm (make check-reference-im2col, check-reference-winograd).
# Prints "N passed, N failed" over all nets; exits non-zero on any failure.
set -u
cd "$(dirname "$0")/../.." || exit 2
san="" ccsan="" tag=plain
if [ "${1:-}" = "--sanitize" ]; then
  san="--sanitize" ccsan="-fsanitize=address,undefined -fno-sanitize-recover=all" tag=asan
  shift
elif [ "${1:-}" = "--no-fuse" ]; then
  san="--no-fuse" tag=nofuse
  shift
elif [ "${1:-}" = "--tune" ]; then
  tag=tuned
  shift
elif [ "${1:-}" = "--avx2" ]; then
  san="--target-cpu=x86-64-v3" tag=avx2
  CNNC_L2_BYTES=16384
  export CNNC_L2_BYTES
  shift
fi
# a convolution algorithm forced (CNNC_CONV, see docs/compiler.md): its own results
case "${CNNC_CONV:-auto}" in auto) ;; *) tag="$tag-$CNNC_CONV" ;; esac
out=build/ref/$tag
mkdir -p "$out"
if [ $tag = tuned ]; then     # the library is tuned (a short budget), the executable uses the cache
  rm -f "$out/tune.json"
  san="--tune --tune-budget=300ms --tune-cache=$(pwd)/$out/tune.json"
fi
nets=${*:-$(cut -d' ' -f1 tests/reference/manifest.txt)}
results=$out/results.txt
for net in $nets; do echo "$net"; done |
  xargs -P 2 -I{} sh tests/reference/check_one.sh "$out" "$san" "$ccsan" {} > "$results"
grep -v -e '^[0-9]* passed' -e '^ok ' "$results"
p=$(awk '/^[0-9]+ passed, [0-9]+ failed$/ {p += $1} END {print p+0}' "$results")
f=$(awk '/^[0-9]+ passed, [0-9]+ failed$/ {f += $3} END {print f+0}' "$results")
echo "reference ($tag): $p passed, $f failed"
[ "$f" = 0 ] && [ "$p" -gt 0 ]
