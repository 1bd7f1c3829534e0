#!/bin/sh
# run.sh: cnnc --tune and the tuning cache (issues #6 and #13).
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
#   default     a kernel whose default the tuning kept has the untuned
#               build's tile and loop order (columns outside where that is
#               the default);
#   order       the untuned build has a routine per loop order: GEMMs whose
#               default orders differ do not share one;
#   rejected    with --tune-fault (testing only) the first candidate of each
#               kernel computes a wrong result: every one is rejected and
#               none is chosen;
#   same        with a complete cache, two --tune compiles measure nothing
#               (-v: "0 measured", every kernel "cache", the file not
#               rewritten) and give byte-identical outputs: the libraries,
#               their headers, the executables (in different folders);
#   partial     a cache missing one kernel's entry: --tune measures that
#               kernel alone and adds its entry back;
#   retune      --retune measures every kernel and replaces their entries
#               (as many entries after as before);
#   damaged     garbage, truncated JSON, JSON of another format, a bad tile, a time of 1e73 us,
#               an empty file, a folder in the cache's place: the compile
#               succeeds with a warning naming the cache (and the line and
#               column where it went wrong); --tune then replaces a damaged
#               cache with a good one;
#   foreign     a cache whose entries are all for another CPU is not used,
#               with a warning;
#   unwritable  a cache that cannot be written is reported; the compile
#               still succeeds;
#   usage       bad --tune-budget values and --tune or --retune with
#               another --target-cpu are refused with exit 2;
#   tidy        no temporary file (cache or object) is left behind.
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
table_tiles() { awk '/^  [0-9]+x[0-9]+(\/cols)? / && $2 ~ /^[0-9]+$/ && $2 >= 1 { t = $1; sub(/^  [0-9]+x[0-9]+(\/cols)? +[0-9]+ +[^ ]+ +[^ ]+ +[^ ]+  /, ""); sub(/ \([0-9]+ rejected\)$/, ""); print t " " $0 }' | sort; }
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
    spent=$(sed -n 's/^cnnc: tuning: .*, \([0-9.]*\) s of a 2 s budget: .*/\1/p' t2.err)
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

# ---- default ---------------------------------------------------------------------
# a kernel whose default the tuning kept (1.00x) has the untuned default's
# tile and loop order: the default was measured in its own order (columns
# outside where gemm_cols_outer_default says so), not rows outside
"$CNNC" "$NET" --summary > s0.txt 2> s0.err
awk '/^  [0-9]+x[0-9]+(\/cols)? +default +/ { t = $1; sub(/^  [0-9]+x[0-9]+(\/cols)? +default +/, ""); print t " " $0 }' s0.txt | sort > untuned.txt
awk '/^  [0-9]+x[0-9]+(\/cols)? / && $2 ~ /^[0-9]+$/ && $2 >= 1 && $5 == "1.00x" { t = $1; sub(/^  [0-9]+x[0-9]+(\/cols)? +[0-9]+ +[^ ]+ +[^ ]+ +[^ ]+  /, ""); sub(/ \([0-9]+ rejected\)$/, ""); print t " " $0 }' t1.err | sort > kept.txt
colsdefault=$(grep -c '/cols ' untuned.txt)
if [ -s kept.txt ] && [ "$colsdefault" -ge 1 ] && [ -z "$(comm -23 kept.txt untuned.txt)" ]; then
    ok default
else
    bad default "kept defaults not as untuned ($colsdefault columns-outer defaults): $(comm -23 kept.txt untuned.txt | head -3)"
fi

# ---- order -----------------------------------------------------------------------
# the untuned build runs each GEMM in its own default order: plain GEMMs
# (no bias) with the default tile, some with columns outside and some with
# rows outside (lenet has both), get two routines, cnnc.gemm.cols and
# cnnc.gemm, not one shared by both orders. The default tile is the
# target's (6x2 with AVX-512, 6x1 with AVX2): the one of the plain GEMMs
# with rows outside.
"$CNNC" "$NET" --emit=llvm -o u.ll 2> u.err
tile=$(sed -n 's/^  \([0-9]*x[0-9]*\)  *default  *gemm .* bias=none.*/\1/p' s0.txt | head -1)
if [ -n "$tile" ] && grep -q "^  $tile/cols  *default  *gemm .* bias=none" s0.txt &&
   grep -q '^define .*@cnnc\.gemm\.cols(' u.ll && grep -q '^define .*@cnnc\.gemm(' u.ll; then
    ok order
else
    bad order "untuned plain GEMMs of both orders, and their two routines: $(grep -o '@cnnc\.gemm[.a-z0-9_]*(' u.ll | sort -u | tr '\n' ' ')"
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

# ---- same, partial, retune ---------------------------------------------------------
# the kernels of a --tune -v run (file $1) that were measured / taken from the cache
measured() { awk '/^  [0-9]+x[0-9]+(\/cols)? / && $2 ~ /^[0-9]+$/ && $2 >= 1' "$1" | wc -l; }
cached() { awk '/^  [0-9]+x[0-9]+(\/cols)? / && $2 == "cache"' "$1" | wc -l; }
entries() { python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["entries"]))' "$1" 2>&1; }
tune5() { "$CNNC" "$NET" --tune --tune-cache=c5.json -v "$@"; }
mkdir -p s1 s2 s3
# a complete cache: lenet's 14 kernels take about 8 s; the default budget (60 s) is far more
if tune5 --lib -o s1/liblenet.a 2> s1.err && grep -q ' measured, 0 from the cache, 0 not reached$' s1.err; then
    n=$(measured s1.err)
    tune5 --lib -o s2/liblenet.a 2> s2.err && tune5 --lib -o s3/liblenet.a 2> s3.err &&
        tune5 -o s2/lenet 2> s2x.err && tune5 -o s3/lenet 2> s3x.err
    rc=$?
    why=""
    for e in s2 s3 s2x s3x; do
        grep -q ": 0 measured, $n from the cache, 0 not reached$" $e.err && [ "$(measured $e.err)" = 0 ] &&
            [ "$(cached $e.err)" = "$n" ] && grep -q "nothing measured, not rewritten" $e.err ||
            why="$why $e.err measured something: $(grep '^cnnc: tuning:' $e.err);"
    done
    for f in liblenet.a lenet.h lenet; do
        cmp -s "s2/$f" "s3/$f" || why="$why $f differs;"
    done
    cmp -s s1/liblenet.a s2/liblenet.a || why="$why the measuring compile's library differs;"
    if [ $rc = 0 ] && [ -z "$why" ] && [ "$n" -ge 5 ] && [ -s s2/lenet ]; then
        ok same
    else
        bad same "exit $rc,$why"
    fi
else
    n=0
    bad same "the first --tune did not measure every kernel: $(grep '^cnnc: tuning' s1.err) $(tail -2 s1.err)"
fi
# partial: one entry deleted, that kernel measured again and only that one
gone=$(python3 -c '
import json, sys
d = json.load(open("c5.json")); e = d["entries"].pop(len(d["entries"]) // 2)
json.dump(d, open("c6.json", "w"), indent=1); print(e["kernel"])' 2>&1)
if "$CNNC" "$NET" --lib -o libp.a --tune --tune-cache=c6.json -v 2> p.err; then
    got=$(awk '/^  [0-9]+x[0-9]+(\/cols)? / && $2 ~ /^[0-9]+$/ && $2 >= 1' p.err | sed 's/^ *[^ ]* *[^ ]* *[^ ]* *[^ ]* *[^ ]*  //')
    if [ "$(measured p.err)" = 1 ] && [ "$(cached p.err)" = $((n - 1)) ] && [ "$got" = "$gone" ] &&
       [ "$(entries c6.json)" = "$n" ]; then
        ok partial
    else
        bad partial "measured $(measured p.err) ($got), cached $(cached p.err), wanted 1 ($gone); $(entries c6.json) entries"
    fi
else
    bad partial "cnnc --tune failed: $(tail -3 p.err)"
fi
# retune: every kernel measured again, their entries replaced
cp c5.json c7.json
if "$CNNC" "$NET" --lib -o libr.a --retune --tune-budget=30s --tune-cache=c7.json -v 2> r.err; then
    if [ "$(measured r.err)" = "$n" ] && [ "$(cached r.err)" = 0 ] && [ "$(entries c7.json)" = "$n" ] &&
       grep -q ": $n kernels measured, saved" r.err && ! cmp -s c5.json c7.json; then
        ok retune
    else
        bad retune "measured $(measured r.err) of $n, cached $(cached r.err), $(entries c7.json) entries after"
    fi
else
    bad retune "cnnc --retune failed: $(tail -3 r.err)"
fi

# ---- damaged, foreign ------------------------------------------------------------
printf '\001\002garbage\377' > d1.json
head -c 300 c1.json > d2.json
printf '{"format": "something-else", "entries": []}' > d3.json
sed 's/"tile": "[0-9]*x[0-9]*"/"tile": "99x99"/' c1.json > d4.json
: > d5.json
mkdir d6.json
printf '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[' > d7.json
sed '0,/"default_us": [0-9.]*/s//"default_us": 1e73/' c1.json > d9.json
all_ok=1
for d in d1 d2 d3 d4 d5 d6 d7 d9; do
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
grep -q "warning: ignoring the tuning cache 'd2.json': line [0-9]*, column [0-9]*: not JSON: " d2.err ||
    { all_ok=0; bad damaged "no line and column for truncated JSON: $(head -1 d2.err)"; }
grep -q "warning: ignoring the tuning cache 'd4.json': line [0-9]*, column [0-9]*: the tile \"99x99\"" d4.err ||
    { all_ok=0; bad damaged "no line and column for a bad tile: $(head -1 d4.err)"; }
grep -q "warning: ignoring the tuning cache 'd9.json': line [0-9]*, column [0-9]*: entry 1's default_us is not a time" d9.err ||
    { all_ok=0; bad damaged "no line and column for a time of 1e73 us: $(head -1 d9.err)"; }
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
for t in --tune --retune; do
    "$CNNC" "$NET" --check $t --target-cpu=x86-64-v3 2> u.err
    rc=$?
    if [ $rc != 2 ] || ! grep -q -- "$t measures on this machine, so it needs the native target" u.err; then
        all_ok=0; bad usage "$t --target-cpu: exit $rc, $(head -1 u.err)"
    fi
done
[ $all_ok = 1 ] && ok usage
left=$(find . -name '*.tmp*')
if [ -z "$left" ]; then ok tidy; else bad tidy "left behind: $left"; fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
