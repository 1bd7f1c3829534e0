#!/bin/sh
# Runs every test suite in turn (make check calls it after building) and
# closes with one line counting the suites: "N passed, N failed".
#   sh tests/check.sh [SUITE...]     (default: all)
set -u
cd "$(dirname "$0")/.." || exit 2
# hermetic: no tuning cache of the user's changes what the tests compile
XDG_CACHE_HOME="${TMPDIR:-/tmp}/cnnc-check-cache.$$"
export XDG_CACHE_HOME
trap 'rm -rf "$XDG_CACHE_HOME"' EXIT
all="unit golden unparse runtime reference reference-nofuse reference-asan reference-tuned reference-avx2 reference-im2col reference-winograd fullsize onnx conformance tune train embed weights mpi predict robustness fuzz"
suites=${*:-$all}
passed=0 failed=0 failures=""
for s in $suites; do
  echo "=== $s"
  start=$(date +%s)
  if make --no-print-directory "check-$s"; then
    passed=$((passed + 1)); verdict=ok
  else
    failed=$((failed + 1)); verdict=FAILED; failures="$failures $s"
  fi
  echo "=== $s: $verdict ($(( $(date +%s) - start )) s)"
done
[ -n "$failures" ] && echo "failed suites:$failures"
echo "suites: $passed passed, $failed failed"
[ "$failed" = 0 ]
