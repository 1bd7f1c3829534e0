#!/bin/sh
# Every example compiles to an executable whose `info` and `bench` run, and
# the compiler refuses a bad --target-cpu with exit 2 (not an LLVM abort).
# Run from the repo root after make. Prints "N passed, N failed" last.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d /tmp/test_examples.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
passed=0 failed=0
ok()  { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; tail -n 5 "$T/err" 2>/dev/null | sed 's/^/     | /'; }
# compiled two at a time first (cnnc takes one core; the full-size examples
# take tens of seconds each), each one's errors in NET.err
for src in "$ROOT"/examples/*.cnn; do echo "$src"; done |
  xargs -P 2 -I{} sh -c 'net=$(basename "$1" .cnn); "$2/bin/cnnc" "$1" -o "$3/$net" 2>"$3/$net.err"' sh {} "$ROOT" "$T"
for src in "$ROOT"/examples/*.cnn; do
  net=$(basename "$src" .cnn)
  if [ ! -x "$T/$net" ]; then cp "$T/$net.err" "$T/err"; bad "$net: compiles"; continue; fi
  params=$("$ROOT/bin/cnnc" "$src" --summary | sed -n 's/^total: \([0-9,]*\) parameters.*/\1/p')
  if "$T/$net" info >"$T/out" 2>"$T/err" && grep -q "^total: $params parameters" "$T/out"; then
    ok "$net: info reports its $params parameters"
  else bad "$net: info"; fi
  if "$T/$net" bench --batch 8 --threads 2 --seconds 0.2 >"$T/out" 2>"$T/err" &&
     grep -q "^forward latency, batch 1: *[0-9.]* us$" "$T/out" &&
     grep -q "^training step, batch 8 *[0-9]* images/s$" "$T/out"; then
    ok "$net: bench reports forward and training speed"
  else bad "$net: bench"; fi
done
"$ROOT/bin/cnnc" "$ROOT/examples/lenet.cnn" --target-cpu=bogus -o "$T/x" 2>"$T/err"
rc=$?
if [ $rc -eq 2 ] && grep -q "unknown --target-cpu 'bogus'" "$T/err"; then ok "a bad --target-cpu is exit 2 with a message"
else bad "a bad --target-cpu (exit $rc)"; fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
