#!/bin/sh
# cnnc against PyTorch and ONNX Runtime on this machine, with 2 threads, and
# the machine's fp32 FMA peak. Writes bench/RESULTS.md.
#
#   sh bench/peers/run.sh [--rounds N] [--reps R] [--rep-seconds S] [--nets a,b]
#                         [--tune-budget T] [--full-nets a,b|none]
#                         [--full-rounds N] [--full-seconds S]
#                         [--layers on|off] [--layer-seconds S] [--budget M]
#
# Three parts, one report:
# 1. The small nets (mlp, lenet, vgg_small), below: many short calls.
# 2. The five full-size examples (bench/peers/fullsize.sh): latency at batch
#    1, forward and training images/s at batch 16, calls bounded in time
#    (--full-seconds, 3 s a measure, at least 2 calls), --full-rounds rounds
#    (2).
# 3. The 3x3 convolutions of ResNet-18 and VGG-16 one at a time, forward and
#    backward GFLOP/s (bench/peers/layers.sh, --layer-seconds 1.5 s a measure).
# The whole run is bounded by --budget (36 minutes): the small nets stop
# adding rounds (after 2) when the next one would end past 35% of it, the
# full-size nets (after 1) past 85%; the layers take the rest (about 4 min).
# Each round's length is estimated as the last one's, so a loaded machine
# gets fewer rounds, not a longer run. RESULTS.md says how many were done.
#
# Steps: compile mlp, lenet and vgg_small with bin/cnnc --lib (3 times each,
# timed by `cnnc -v`), build bench/peers/cnnc_bench.c against each; for lenet
# and vgg_small also a tuned library: `cnnc --lib --tune --tune-budget=T`
# (T: 60s unless --tune-budget says otherwise; cnnc's syntax: 60s, 2m, 500ms)
# with a fresh tuning cache, wall time measured, then a second compile with
# that cache and without --tune (timed, and its tiles, from `cnnc --summary
# --tune-cache`, compared with the tuning run's), results in raw/tune.jsonl;
# cnnc_bench built against the tuned library too and run right after the
# untuned one in every round (system "cnnc_tuned"). Then build the
# peak probe (bench/probe/peak.c), export the nets to ONNX with PyTorch, then
# run the systems in alternation, round after round (cnnc, torch,
# torch+OpenBLAS, ort, probe; cnnc, torch, ...), and write the medians over
# the rounds with bench/peers/report.py.
#
# Peers:
# - PyTorch: Debian's python3-torch run by /usr/bin/python3. As installed it
#   links libblas.so.3, which is the reference (netlib) BLAS unless an
#   optimized one is installed (then the alternatives system points it
#   there), in the environment as it is (OPENBLAS_* variables included).
#   So torch is measured twice: as installed, and with OpenBLAS: Debian's
#   libopenblas0-pthread, the installed one if it is installed, else fetched
#   with `apt-get download` and unpacked under build/bench/ (not installed);
#   put first by LD_LIBRARY_PATH, with OPENBLAS_CORETYPE=SkylakeX for its
#   AVX-512 kernels where the CPU has AVX-512, else Haswell (common.sh's
#   openblas_core), and the environment's OPENBLAS_L2_SIZE removed.
# - ONNX Runtime: npm onnxruntime-node, installed by this script into
#   bench/peers/node_modules with --ignore-scripts if it is missing.
# A peer that is missing or fails is reported as "not available" with the
# reason; the run goes on.
set -u
cd "$(dirname "$0")/../.."
root=$(pwd)

rounds=5 reps=7 rep_seconds=0.25 nets="mlp lenet vgg_small" tune_budget=60s
full_nets="alexnet vgg16 googlenet resnet18 mobilenet_v2" full_rounds=2 full_seconds=3
layers=on layer_seconds=1.5 budget=36
usage="usage: sh bench/peers/run.sh [--rounds N] [--reps R] [--rep-seconds S] [--nets a,b] [--tune-budget T] [--full-nets a,b|none] [--full-rounds N] [--full-seconds S] [--layers on|off] [--layer-seconds S] [--budget M]"
while [ $# -gt 0 ]; do
  case "$1" in
    --full-nets) full_nets=$(echo "$2" | tr , ' '); [ "$full_nets" = none ] && full_nets=""; shift 2 ;;
    --full-rounds) full_rounds=$2; shift 2 ;;
    --full-seconds) full_seconds=$2; shift 2 ;;
    --layers) layers=$2; shift 2 ;;
    --layer-seconds) layer_seconds=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --rep-seconds) rep_seconds=$2; shift 2 ;;
    --nets) nets=$(echo "$2" | tr , ' '); shift 2 ;;
    --tune-budget) tune_budget=$2; shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
threads=2
CNNC=${CNNC:-bin/cnnc}
PY=${TORCH_PYTHON:-/usr/bin/python3}   # Debian's python3-torch
CC=${CC:-cc}
out=build/bench/peers
raw=$out/raw
t_start=$(date +%s)
small_deadline=$((t_start + budget * 60 * 35 / 100))
full_deadline=$((t_start + budget * 60 * 85 / 100))
# room START DEADLINE: another round, as long as the last one (begun at
# START), ends before DEADLINE (seconds since the epoch)
room() { [ $(( $(date +%s) * 2 - $1 )) -le "$2" ]; }
rm -rf "$raw" "$out/onnx" "$out/tuned"
mkdir -p "$raw" "$out/onnx"
timing="--threads $threads --reps $reps --rep-seconds $rep_seconds"

say() { echo "run.sh: $*" >&2; }
# note SYSTEM REASON: a system (or one of its nets) is not available.
. bench/peers/common.sh    # note, bench_net

# --- the machine ---------------------------------------------------------
{
  printf '{"model": "%s", "cpus": %s, "date": "%s", "load_start": "%s"' \
    "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" "$(nproc)" \
    "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(cut -d' ' -f1-3 /proc/loadavg)"
  printf ', "cnnc_version": "%s"' "$("$CNNC" --version 2>/dev/null | head -1 | sed 's/^cnnc *//' | tr -d '"\\')"
  printf ', "torch_deb": "%s"' "$(dpkg-query -W -f='${Version}' python3-torch 2>/dev/null)"
  printf ', "cores": "%s", "flags_avx512f": %s, "rounds": %s, "reps": %s, "rep_seconds": %s, "threads": %s}\n' \
    "$(lscpu | sed -n 's/^Core(s) per socket: *//p' | head -1) per socket, $(lscpu | sed -n 's/^Socket(s): *//p' | head -1) socket(s), $(lscpu | sed -n 's/^Thread(s) per core: *//p' | head -1) thread(s) per core" \
    "$(grep -q avx512f /proc/cpuinfo && echo true || echo false)" "$rounds" "$reps" "$rep_seconds" "$threads"
} > "$raw/machine.json"

# --- cnnc: compile (timed) and build the C API benchmark ------------------
cnnc_nets=""
for net in $nets; do
  ok=1
  for i in 1 2 3; do
    if ! "$CNNC" "examples/$net.cnn" --lib -v -o "$out/lib$net.a" > "$raw/compile.$net.log" 2>&1; then
      note cnnc "$net: bin/cnnc --lib failed: $(tail -1 "$raw/compile.$net.log")"; ok=0; break
    fi
    ms=$(sed -n 's/^cnnc: total *\([0-9.]*\) ms.*/\1/p' "$raw/compile.$net.log")
    echo "{\"system\": \"cnnc\", \"net\": \"$net\", \"compile_ms\": ${ms:-null}}" >> "$raw/compile.jsonl"
  done
  [ $ok = 1 ] || continue
  bench_net "$net" cc && cnnc_nets="$cnnc_nets $net"
  say "cnnc: $net compiled"
done

# --- cnnc --tune: lenet and vgg_small, tuned with a fresh cache ------------
# The tuning compile (wall time), then a second compile with the cache only
# (wall time; its tiles, as `--summary --tune-cache` lists them, must be the
# ones the tuning run chose), then cnnc_bench against the tuned library.
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# the tuning run's -v table as "TILE SIGNATURE" lines, in signature order
tuned_tiles() {
  sed -n '/^cnnc: tuning:/,/^cnnc: tune /p' "$1" | awk '/^  [0-9]+x[0-9]+(\/cols)? / {
    s = $0; sub(/^ *[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +/, "", s); sub(/ +\([0-9]+ rejected\)$/, "", s)
    print s "\t" $1 }' | LC_ALL=C sort
}
# the same from `cnnc --summary --tune-cache`'s "GEMM kernels" list
summary_tiles() {
  sed -n '/^GEMM kernels/,$p' "$1" | awk '/^  [0-9]+x[0-9]+(\/cols)? / {
    s = $0; sub(/^ *[^ ]+ +(tuned \(cache\)|tuned|default) +/, "", s)
    print s "\t" $1 }' | LC_ALL=C sort
}
# the checksums of an archive's members' contents, sorted (names left out:
# cnnc names the network's object after its temporary file)
members() { (d=$(mktemp -d) && cd "$d" && ar x "$1" && md5sum ./* | cut -d' ' -f1 | sort; rm -rf "$d") }
budget_s=$(echo "$tune_budget" | awk '{ v = $0 + 0; u = $0; sub(/^[0-9.]+/, "", u)
  printf "%g", u == "ms" ? v / 1000 : (u == "m" || u == "min") ? v * 60 : v }')
tuned_nets=""
for net in $nets; do
  case "$net" in lenet|vgg_small) ;; *) continue ;; esac
  NETU=$(echo "$net" | tr a-z A-Z)
  tdir=$out/tuned
  cache=$tdir/$net.tune.json
  mkdir -p "$tdir/cached"
  rm -f "$cache"
  say "cnnc: tuning $net (--tune-budget=$tune_budget)"
  t0=$(now)
  if ! "$CNNC" "examples/$net.cnn" --lib --tune --tune-budget="$tune_budget" --tune-cache="$cache" -v \
       -o "$tdir/lib$net.a" > "$raw/tune.$net.log" 2>&1; then
    note cnnc_tuned "$net: bin/cnnc --lib --tune failed: $(tail -1 "$raw/tune.$net.log")"; continue
  fi
  tune_s=$(secs "$t0" "$(now)")
  tuner_s=$(sed -n 's/^cnnc: tuning: .*GEMM kernels, \([0-9.]*\) s of a .*/\1/p' "$raw/tune.$net.log")
  kernels=$(sed -n 's/^cnnc: tuning: \([0-9]*\) GEMM kernels.*/\1/p' "$raw/tune.$net.log")
  improved=$(sed -n '/^cnnc: tuning:/,/^cnnc: tune /p' "$raw/tune.$net.log" |
    awk '/^  [0-9]+x[0-9]+(\/cols)? / && $5 ~ /x$/ && $5 + 0 > 1.00 { k++ } END { print k + 0 }')
  cached_s=null same=null cached_kernels=null
  t0=$(now)
  if "$CNNC" "examples/$net.cnn" --lib --tune-cache="$cache" -v -o "$tdir/cached/lib$net.a" \
       > "$raw/tune.$net.cached.log" 2>&1; then
    cached_s=$(secs "$t0" "$(now)")
  else
    note cnnc_tuned "$net: the second compile, with the cache, failed: $(tail -1 "$raw/tune.$net.cached.log")"
  fi
  if "$CNNC" "examples/$net.cnn" --summary --tune-cache="$cache" > "$raw/tune.$net.summary.txt" 2>&1; then
    tuned_tiles "$raw/tune.$net.log" > "$raw/tune.$net.tiles"
    summary_tiles "$raw/tune.$net.summary.txt" > "$raw/tune.$net.cached.tiles"
    if [ -s "$raw/tune.$net.tiles" ] && cmp -s "$raw/tune.$net.tiles" "$raw/tune.$net.cached.tiles"; then
      same=true
    else
      same=false
      note cnnc_tuned "$net: the compile with the cache chose other tiles than the tuning run (see $raw/tune.$net.tiles and $raw/tune.$net.cached.tiles)"
    fi
    cached_kernels=$(grep -c '^ *[0-9]*x[0-9]*\(/cols\)\? *tuned (cache) ' "$raw/tune.$net.summary.txt")
  else
    note cnnc_tuned "$net: bin/cnnc --summary --tune-cache failed: $(tail -1 "$raw/tune.$net.summary.txt")"
  fi
  # --tune a second time with the same cache (issue #13: it should measure
  # nothing and write a byte-identical library)
  again_s=null again_tuner_s=null identical=null same_objects=null
  mkdir -p "$tdir/again"
  t0=$(now)
  if "$CNNC" "examples/$net.cnn" --lib --tune --tune-budget="$tune_budget" --tune-cache="$cache" -v \
       -o "$tdir/again/lib$net.a" > "$raw/tune.$net.again.log" 2>&1; then
    again_s=$(secs "$t0" "$(now)")
    again_tuner_s=$(sed -n 's/^cnnc: tuning: .*GEMM kernels, \([0-9.]*\) s of a .*/\1/p' "$raw/tune.$net.again.log")
    if cmp -s "$tdir/lib$net.a" "$tdir/again/lib$net.a"; then identical=true; else identical=false; fi
    if [ "$(members "$root/$tdir/lib$net.a")" = "$(members "$root/$tdir/again/lib$net.a")" ]; then
      same_objects=true; else same_objects=false; fi
  else
    note cnnc_tuned "$net: the second --tune with the same cache failed: $(tail -1 "$raw/tune.$net.again.log")"
  fi
  echo "{\"net\": \"$net\", \"budget\": \"$tune_budget\", \"budget_s\": ${budget_s:-null}, \"tune_s\": $tune_s, \"tuner_s\": ${tuner_s:-null}, \"cached_compile_s\": $cached_s, \"same_variants\": $same, \"kernels\": ${kernels:-null}, \"improved\": ${improved:-null}, \"cached_kernels\": $cached_kernels, \"again_s\": $again_s, \"again_tuner_s\": ${again_tuner_s:-null}, \"again_identical\": $identical, \"again_same_objects\": $same_objects}" >> "$raw/tune.jsonl"
  if $CC -O2 -DNET="$net" -DNETU="$NETU" -include "$tdir/$net.h" bench/peers/cnnc_bench.c \
       "$tdir/lib$net.a" -fopenmp -lm -o "$out/cnnc_bench_${net}_tuned" 2> "$raw/cc.$net.tuned.log"; then
    tuned_nets="$tuned_nets $net"
  else
    note cnnc_tuned "$net: building cnnc_bench against the tuned library failed: $(head -1 "$raw/cc.$net.tuned.log")"
  fi
  say "cnnc: $net tuned in $tune_s s (budget $tune_budget); compile with the cache: $cached_s s, same tiles: $same"
done

# --- the peak probe ------------------------------------------------------
probe=""
if $CC -O2 -march=native -fopenmp bench/probe/peak.c -o build/bench/peak 2> "$raw/peak.cc.log"; then
  probe=build/bench/peak
else
  note peak "building bench/probe/peak.c failed: $(head -1 "$raw/peak.cc.log")"
fi

# --- PyTorch: export to ONNX; OpenBLAS for the second torch -----------------
torch_ok=0
if $PY -c 'import torch' 2> "$raw/torch.import.log"; then
  torch_ok=1
  if ! $PY bench/peers/torch_bench.py --export "$out/onnx" --nets "$(echo $nets | tr ' ' ,)" \
       > "$raw/export.jsonl" 2> "$raw/export.log"; then
    note ort "ONNX export failed: $(tail -1 "$raw/export.log")"
  fi
else
  note torch "import torch failed: $(tail -1 "$raw/torch.import.log")"
  note torch_openblas "import torch failed"
  note ort "no ONNX files: torch, which exports them, is not available"
fi

obdir=/usr/lib/x86_64-linux-gnu/openblas-pthread
if [ $torch_ok = 1 ] && [ ! -e "$obdir/libblas.so.3" ]; then
  obdir=$root/build/bench/openblas/usr/lib/x86_64-linux-gnu/openblas-pthread
  if [ ! -e "$obdir/libblas.so.3" ]; then
    say "fetching Debian's libopenblas0-pthread (not installed: unpacked under build/bench/openblas)"
    mkdir -p build/bench/openblas
    (cd build/bench/openblas && rm -f ./*.deb && apt-get download libopenblas0-pthread > dl.log 2>&1 &&
       dpkg-deb -x libopenblas0-pthread_*.deb .) || true
  fi
fi
torch_ob=0
if [ $torch_ok = 1 ]; then
  if [ -e "$obdir/libblas.so.3" ]; then torch_ob=1
  else note torch_openblas "libopenblas0-pthread is not installed and apt-get download could not fetch it"; fi
fi
run_torch_ob() {
  env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE=$(openblas_core) LD_LIBRARY_PATH="$obdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"
}

# --- ONNX Runtime --------------------------------------------------------
ort_ok=0
if command -v node > /dev/null; then
  if [ ! -d bench/peers/node_modules/onnxruntime-node ]; then
    say "installing onnxruntime-node (npm install --ignore-scripts)"
    (cd bench/peers && npm install --ignore-scripts --no-audit --no-fund > "$root/$raw/npm.log" 2>&1) ||
      note ort "npm install --ignore-scripts failed: $(tail -1 "$raw/npm.log")"
  fi
  if (cd bench/peers && node -e 'require("onnxruntime-node")') 2> "$raw/ort.load.log"; then
    ort_ok=1
  else
    note ort "cannot load onnxruntime-node: $(grep -m1 -i error "$raw/ort.load.log")"
  fi
else
  note ort "node is not installed"
fi

# --- the rounds: cnnc, torch, torch+OpenBLAS, ort, probe; again ------------
r=1
t_round=$(date +%s)
while [ "$r" -le "$rounds" ]; do
  if [ "$r" -gt 2 ] && ! room "$t_round" "$small_deadline"; then
    say "no round $r: it would end past the small nets' share of the --budget ($budget min)"; break
  fi
  t_round=$(date +%s)
  say "round $r of $rounds: cnnc"
  for net in $cnnc_nets; do
    for mode in train forward; do
      "$out/cnnc_bench_$net" $mode $timing >> "$raw/r$r.cnnc.jsonl" 2>> "$raw/r$r.cnnc.err" ||
        note cnnc "$net $mode: exit $? $(tail -1 "$raw/r$r.cnnc.err")"
    done
    # the tuned library right after the untuned one (system "cnnc_tuned"), same
    # arguments, so that the two alternate closely in time
    case " $tuned_nets " in *" $net "*)
      for mode in train forward; do
        "$out/cnnc_bench_${net}_tuned" $mode $timing > "$raw/r$r.cnnc_tuned.out" 2>> "$raw/r$r.cnnc_tuned.err" ||
          note cnnc_tuned "$net $mode: exit $? $(tail -1 "$raw/r$r.cnnc_tuned.err")"
        sed 's/"system": *"cnnc"/"system": "cnnc_tuned"/' "$raw/r$r.cnnc_tuned.out" >> "$raw/r$r.cnnc_tuned.jsonl"
      done
      rm -f "$raw/r$r.cnnc_tuned.out" ;;
    esac
    # training on one thread too, for the 1 -> 2 thread speedup (train_ips_1t)
    "$out/cnnc_bench_$net" train --threads 1 --reps $reps --rep-seconds $rep_seconds 2>> "$raw/r$r.cnnc.err" |
      sed -e 's/"train_ips\([a-z_]*\)"/"train_ips_1t\1"/g' -e 's/, *"[a-z_]*rss_mb": *[0-9.]*//g' \
      >> "$raw/r$r.cnnc.jsonl" || note cnnc "$net train on 1 thread failed"
  done
  if [ $torch_ok = 1 ]; then
    say "round $r of $rounds: torch (as installed)"
    $PY bench/peers/torch_bench.py --nets "$(echo $nets | tr ' ' ,)" $timing \
      >> "$raw/r$r.torch.jsonl" 2>> "$raw/r$r.torch.err" || true
  fi
  if [ $torch_ob = 1 ]; then
    say "round $r of $rounds: torch + OpenBLAS"
    run_torch_ob $PY bench/peers/torch_bench.py --system torch_openblas --nets "$(echo $nets | tr ' ' ,)" \
      $timing >> "$raw/r$r.torch_openblas.jsonl" 2>> "$raw/r$r.torch_openblas.err" || true
  fi
  if [ $ort_ok = 1 ]; then
    say "round $r of $rounds: onnxruntime"
    ort_nets=""
    for net in $nets; do [ -s "$out/onnx/$net.onnx" ] && ort_nets="$ort_nets,$net"; done
    [ -n "$ort_nets" ] && node bench/peers/ort_bench.js "$out/onnx" --nets "$ort_nets" $timing \
      >> "$raw/r$r.ort.jsonl" 2>> "$raw/r$r.ort.err" || true
  fi
  if [ -n "$probe" ]; then
    say "round $r of $rounds: peak probe"
    "$probe" >> "$raw/peak.jsonl" 2>> "$raw/peak.err" || note peak "the probe failed"
  fi
  r=$((r + 1))
done
printf '{"load_end": "%s", "rounds_done": %s, "budget_min": %s}\n' "$(cut -d' ' -f1-3 /proc/loadavg)" \
  $((r - 1)) "$budget" >> "$raw/machine.json"
t_small=$(date +%s)

# --- the full-size nets and their 3x3 convolutions -------------------------
if [ -n "$full_nets" ]; then
  [ $torch_ob = 1 ] || obdir=""
  OBDIR=$obdir ORT_OK=$ort_ok TORCH_PYTHON=$PY FULL_DEADLINE=$full_deadline sh bench/peers/fullsize.sh "$raw" \
    --nets "$(echo $full_nets | tr ' ' ,)" --rounds "$full_rounds" --seconds "$full_seconds" --threads $threads \
    --tune-budget "$tune_budget"
fi
t_full=$(date +%s)
if [ "$layers" = on ]; then
  TORCH_PYTHON=$PY sh bench/peers/layers.sh "$raw" --seconds "$layer_seconds" --threads $threads
fi
t_end=$(date +%s)
awk -v a="$t_start" -v b="$t_small" -v c="$t_full" -v d="$t_end" -v l="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
  printf "{\"minutes_small\": %.1f, \"minutes_full\": %.1f, \"minutes_layers\": %.1f, \"load_final\": \"%s\"}\n",
    (b - a) / 60, (c - b) / 60, (d - c) / 60, l }' >> "$raw/machine.json"

python3 bench/peers/report.py "$raw" bench/RESULTS.md || exit 1
cat bench/RESULTS.md
