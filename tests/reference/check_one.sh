#!/bin/sh
# Builds one reference net as a library and an executable, then runs its
# check (see run.sh). Usage: check_one.sh OUTDIR "SAN_FLAG" "CC_SAN_FLAGS" NET
out=$1 san=$2 ccsan=$3 net=$4
CNNC=${CNNC:-bin/cnnc}
CC=${CC:-cc}
d=$out/$net
mkdir -p "$d"
src=tests/reference/nets/$net.cnn
san_exe=$(echo "$san" | sed -e 's/--tune-budget=[^ ]*//' -e 's/--tune //')   # the executable: the cache only
if ! { $CNNC "$src" --lib $san -o "$d/lib$net.a" &&
       $CNNC "$src" $san_exe -o "$d/$net" &&
       $CC -std=c11 -O1 -g $ccsan -Iruntime -I"$d" -DNET="$net" -include "$d/$net.h" \
           -o "$d/check" tests/reference/check_net.c "$d/lib$net.a" -fopenmp -lm; } > "$d/log" 2>&1; then
  echo "FAIL  $net: does not build"
  sed 's/^/      /' "$d/log"
  echo "0 passed, 1 failed"
  exit 0
fi
"$d/check" tests/reference "$d/$net" 2>&1
exit 0
