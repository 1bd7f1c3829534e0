#!/bin/sh
# run.sh: cnnc --tune and the tuning cache (issue #6).
#
#   sh tests/tune/run.sh       (from the repository's root, after `make`)
#
# Checks, each printed as "ok  NAME" or "FAIL  NAME: why":
#   tune        --tune -v prints a table of the GEMM kernels and writes a
#               cache that is JSON with one entry per kernel measured;
#   budget      the time the tuner reports stays within --tune-budget (plus
#               at most one candidate's measurement);
#   roundtrip   a compile without --tune reads the cache: --summary shows
#               every kernel the tuning measured "tuned (cache)" with the
#               tile the tuning chose;
#   rejected    with --tune-fault (testing only) the first candidate of each
#               kernel computes a wrong result: every one is rejected and
#               none is chosen;
#   damaged     garbage, truncated JSON, JSON of another format, a bad tile,
#               an empty file, a folder in the cache's place: the compile
#               succeeds with a warning naming the cache; --tune then
#               replaces a damaged cache with a good one;
#   foreign     a cache whose entries are all for another CPU is not used,
#               with a warning;
#   unwritable  a cache that cannot be written is reported; the compile
#               still succeeds;
#   usage       bad --tune-budget values and --tune with another
#               --target-cpu are refused with exit 2.
# (That tuned code computes what PyTorch does is tests/reference/run.sh
# --tune.) The last line is "N passed, N failed".

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CNNC=$ROOT/bin/cnnc
NET=$ROOT/examples/lenet.cnn
if [ ! -x "$CNNC" ]; then
    echo "run.sh: no $CNNC (run make first)"; echo "0 passed, 1 failed"; exit 1
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/tune.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
XDG_CACHE_HOME=$T/xdg
export XDG_CACHE_HOME
pass=0 fail=0
ok() { echo "ok  $1"; pass=$((pass + 1)); }
bad() { echo "FAIL  $1: $2"; fail=$((fail + 1)); }

# the "tile kernel" pairs of a -v table (stdin) for the kernels measured, sorted
table_tiles() { awk '/^  [0-9]+x[0-9]+(\/cols)? / && $2 >= 1 { t = $1; sub(/^  [0-9]+x[0-9]+(\/cols)? +[0-9]+ +[^ ]+ +[^ ]+ +[^ ]+  /, ""); sub(/ \([0-9]+ rejected\)$/, ""); print t " " $0 }' | sort; }
# the same from --summary's kernel list (stdin), for the kernels the cache had
summary_tiles() { awk '/^  [0-9]+x[0-9]+(\/cols)? +tuned \(cache\)/ { t = $1; sub(/^  [0-9]+x[0-9]+(\/cols)? +(tuned \(cache\)|tuned|default) +/, ""); print t " " $0 }' | sort; }

# ---- tune, budget ------------------------------------------------------------
if "$CNNC" "$NET" --lib -o libt1.a --tune --tune-budget=4s --tune-cache=c1.json -v 2> t1.err; then
    kernels=$(table_tiles < t1.err | wc -l)
    entries=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["format"]=="cnnc-tune-cache-1"; print(len(d["entries"]))' c1.json 2>&1)
    if [ "$kernels" -ge 5 ] && [ "$entries" = "$kernels" ] && [ -s libt1.a ]; then
        ok tune
    else
        bad tune "$kernels kernels in the table, cache: $entries"
    fi
else
    bad tune "cnnc --tune failed: $(tail -3 t1.err)"
fi
# vgg_small has more work than a 2 s budget: the tuner must stop in time
if "$CNNC" "$ROOT/examples/vgg_small.cnn" --lib -o libt2.a --tune --tune-budget=2s --tune-cache=c2.json -v 2> t2.err; then
    spent=$(sed -n 's/^cnnc: tuning: .*, \([0-9.]*\) s of a 2 s budget$/\1/p' t2.err)
    if [ -n "$spent" ] && awk -v s="$spent" 'BEGIN { exit !(s <= 2.6) }'; then
        ok budget
    else
        bad budget "spent '$spent' s of 2 s: $(grep tuning: t2.err)"
    fi
else
    bad budget "cnnc --tune failed: $(tail -3 t2.err)"
fi

# ---- roundtrip -----------------------------------------------------------------
table_tiles < t1.err > tuned.txt
"$CNNC" "$NET" --summary --tune-cache c1.json > s1.txt 2> s1.err
summary_tiles < s1.txt > cached.txt
if [ -s tuned.txt ] && cmp -s tuned.txt cached.txt && [ ! -s s1.err ]; then
    ok roundtrip
else
    bad roundtrip "tuned and cached tiles differ: $(diff tuned.txt cached.txt | head -4) $(head -2 s1.err)"
fi

# ---- rejected ------------------------------------------------------------------
if "$CNNC" "$NET" --lib -o libt3.a --tune --tune-fault --tune-budget=4s --tune-cache=c3.json -v 2> t3.err; then
    multi=$(awk '/^  [0-9]+x[0-9]+(\/cols)? +[0-9]+ / && $2 >= 2' t3.err | wc -l)
    rejected=$(grep -c '(1 rejected)$' t3.err)
    said=$(grep -c 'rejected: its result differs' t3.err)
    if [ "$multi" -ge 3 ] && [ "$rejected" = "$multi" ] && [ "$said" = "$multi" ]; then
        ok rejected
    else
        bad rejected "$multi kernels with candidates, $rejected with one rejected, $said messages"
    fi
else
    bad rejected "cnnc --tune --tune-fault failed: $(tail -3 t3.err)"
fi

# ---- damaged, foreign ------------------------------------------------------------
printf '\001\002garbage\377' > d1.json
head -c 300 c1.json > d2.json
printf '{"format": "something-else", "entries": []}' > d3.json
sed 's/"tile": "[0-9]*x[0-9]*"/"tile": "99x99"/' c1.json > d4.json
: > d5.json
mkdir d6.json
printf '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[' > d7.json
all_ok=1
for d in d1 d2 d3 d4 d5 d6 d7; do
    if ! "$CNNC" "$NET" --lib -o "lib$d.a" --tune-cache="$d.json" 2> "$d.err" || [ ! -s "lib$d.a" ] ||
       ! grep -q "warning: ignoring the tuning cache '$d.json'" "$d.err"; then
        all_ok=0; bad damaged "$d: $(head -2 "$d.err")"
    fi
done
if "$CNNC" "$NET" --lib -o libd8.a --tune --tune-budget=1s --tune-cache=d1.json 2> d8.err &&
   python3 -c 'import json,sys; json.load(open(sys.argv[1]))' d1.json 2> /dev/null; then
    :
else
    all_ok=0; bad damaged "--tune did not replace a damaged cache: $(head -2 d8.err)"
fi
[ $all_ok = 1 ] && ok damaged
sed 's/"cpu": "[^"]*"/"cpu": "some-other-cpu\/0000000000000000"/' c1.json > f1.json
"$CNNC" "$NET" --summary --tune-cache=f1.json > f1.txt 2> f1.err
if grep -q "warning: ignoring the tuning cache 'f1.json': it has no entries for this CPU" f1.err &&
   ! grep -q 'tuned (cache)' f1.txt; then
    ok foreign
else
    bad foreign "$(head -2 f1.err)"
fi

# ---- unwritable, usage -------------------------------------------------------------
if "$CNNC" "$NET" --lib -o libu1.a --tune --tune-budget=500ms --tune-cache=/proc/cnnc-no/tune.json 2> u1.err &&
   [ -s libu1.a ] && grep -q "cannot write the tuning cache '/proc/cnnc-no/tune.json'" u1.err; then
    ok unwritable
else
    bad unwritable "$(head -2 u1.err)"
fi
all_ok=1
for b in --tune-budget=abc --tune-budget=0s --tune-budget=-5 --tune-budget=3d --tune-budget=25h --tune-budget; do
    "$CNNC" "$NET" --check "$b" 2> u.err
    rc=$?
    if [ $rc != 2 ] || ! grep -q -- "--tune-budget needs a" u.err; then
        all_ok=0; bad usage "$b: exit $rc, $(head -1 u.err)"
    fi
done
"$CNNC" "$NET" --check --tune --target-cpu=x86-64-v3 2> u.err
rc=$?
if [ $rc != 2 ] || ! grep -q "needs the native target" u.err; then
    all_ok=0; bad usage "--tune --target-cpu: exit $rc, $(head -1 u.err)"
fi
[ $all_ok = 1 ] && ok usage

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
