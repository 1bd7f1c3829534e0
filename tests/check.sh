#!/bin/sh
# Runs every test suite in turn (make check calls it after building) and
# closes with one line counting the suites: "N passed, N failed".
#   sh tests/check.sh [SUITE...]     (default: all)
set -u
cd "$(dirname "$0")/.." || exit 2
all="unit golden runtime reference reference-nofuse reference-asan train embed predict robustness fuzz"
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
