#!/bin/sh
# The five full-size examples (examples/{alexnet,vgg16,googlenet,resnet18,
# mobilenet_v2}.cnn, 3x224x224 inputs, random weights) in cnnc, PyTorch and
# ONNX Runtime, 2 threads. Called by bench/peers/run.sh after the small nets;
# writes RAW/full.*.
#
#   sh bench/peers/fullsize.sh RAW [--nets a,b] [--rounds N] [--seconds S]
#                              [--batch B] [--threads T] [--tune-nets a,b|none]
#                              [--tune-budget T]
#
# Measures, per net and system: forward latency at batch 1 (ms), forward
# images/s at batch B (16), training step images/s at batch B (cnnc and
# PyTorch; ONNX Runtime has no training). Each measure is bounded in time: one
# untimed call (allocations, first touch), then calls until S seconds (3)
# have passed and at least 2 were made; the median call. A VGG-16 training
# step takes seconds, so a measure can take several times S.
# Systems run in alternation, net by net, round after round: cnnc, torch,
# torch+OpenBLAS, ORT; the peak probe after each round.
# --tune-nets (resnet18): also a library built with `--tune --tune-budget=T`
# (60s) and a fresh cache, whose training step is measured right after
# cnnc's (system cnnc_tuned; issue #13 asks tuned >= 1.1x untuned).
# With ONNX Runtime, cnnc also compiles the ONNX files it runs (`cnnc
# NET.onnx --lib`) and measures their latency and forward right after
# cnnc's (system cnnc_onnx; issue #14 asks the speed of the hand-written).
# The environment comes from run.sh: OBDIR (OpenBLAS for torch_openblas,
# empty if none), ORT_OK=1 when onnxruntime-node loads, TORCH_PYTHON, and
# FULL_DEADLINE (seconds since the epoch): after the first round, a round
# that would end past it at the last round's pace is not begun.
set -u
cd "$(dirname "$0")/../.."
raw=$1; shift
nets="alexnet vgg16 googlenet resnet18 mobilenet_v2" rounds=2 seconds=3 batch=16 threads=2
tune_nets=resnet18 tune_budget=60s
while [ $# -gt 0 ]; do
  case "$1" in
    --nets) nets=$(echo "$2" | tr , ' '); shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --tune-nets) tune_nets=$(echo "$2" | tr , ' '); [ "$tune_nets" = none ] && tune_nets=""; shift 2 ;;
    --tune-budget) tune_budget=$2; shift 2 ;;
    *) echo "usage: sh bench/peers/fullsize.sh RAW [--nets a,b] [--rounds N] [--seconds S] [--batch B] [--threads T] [--tune-nets a,b|none] [--tune-budget T]" >&2; exit 2 ;;
  esac
done
CNNC=${CNNC:-bin/cnnc}
PY=${TORCH_PYTHON:-/usr/bin/python3}
CC=${CC:-cc}
obdir=${OBDIR:-}
out=build/bench/peers/full
mkdir -p "$out" "$out/onnx" "$raw"
say() { echo "fullsize.sh: $*" >&2; }
. bench/peers/common.sh    # note, bench_net
printf '{"full_nets": "%s", "full_rounds": %s, "full_seconds": %s, "full_batch": %s, "full_load_start": "%s"}\n' \
  "$nets" "$rounds" "$seconds" "$batch" "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$raw/machine.json"

# --- cnnc: the libraries and their cnnc_bench --------------------------------
cnnc_nets=""
for net in $nets; do
  if ! "$CNNC" "examples/$net.cnn" --lib -o "$out/lib$net.a" > "$raw/full.compile.$net.log" 2>&1; then
    note cnnc "$net: bin/cnnc --lib failed: $(tail -1 "$raw/full.compile.$net.log")"; continue
  fi
  bench_net "$net" full.cc && cnnc_nets="$cnnc_nets $net"
done
say "cnnc: compiled$cnnc_nets"

# --- cnnc --tune: a fresh cache; the training step measured as cnnc_tuned ----
tuned_nets=""
for net in $tune_nets; do
  case " $cnnc_nets " in *" $net "*) ;; *) continue ;; esac
  NETU=$(echo "$net" | tr a-z A-Z)
  mkdir -p "$out/tuned"
  rm -f "$out/tuned/$net.tune.json"
  say "cnnc: tuning $net (--tune-budget=$tune_budget)"
  t0=$(date +%s)
  if "$CNNC" "examples/$net.cnn" --lib --tune --tune-budget="$tune_budget" --tune-cache="$out/tuned/$net.tune.json" \
       -v -o "$out/tuned/lib$net.a" > "$raw/full.tune.$net.log" 2>&1 &&
     $CC -O2 -DNET="$net" -DNETU="$NETU" -include "$out/tuned/$net.h" bench/peers/cnnc_bench.c \
       "$out/tuned/lib$net.a" -fopenmp -lm -o "$out/cnnc_bench_${net}_tuned" 2>> "$raw/full.tune.$net.log"; then
    tuned_nets="$tuned_nets $net"
    printf '{"net": "%s", "budget": "%s", "tune_wall_s": %s, "tuning": "%s"}\n' "$net" "$tune_budget" \
      "$(( $(date +%s) - t0 ))" "$(sed -n 's/^cnnc: tuning: //p' "$raw/full.tune.$net.log" | tr -d '"\\')" >> "$raw/full.tune.jsonl"
  else
    note cnnc_tuned "$net: bin/cnnc --lib --tune failed: $(tail -1 "$raw/full.tune.$net.log")"
  fi
done

# --- ONNX: exported from torchvision's models by torch_bench.py --------------
ort_nets=""
if [ "${ORT_OK:-0}" = 1 ]; then
  $PY bench/peers/torch_bench.py --export "$out/onnx" --nets "$(echo $nets | tr ' ' ,)" \
    > "$raw/full.export.jsonl" 2> "$raw/full.export.log" || note ort "ONNX export of the full-size nets failed: $(tail -1 "$raw/full.export.log")"
  for net in $nets; do [ -s "$out/onnx/$net.onnx" ] && ort_nets="$ort_nets $net"; done
fi

# --- cnnc on the same ONNX files: `cnnc NET.onnx --lib` (system cnnc_onnx) ---
onnx_nets=""
for net in $ort_nets; do
  NETU=$(echo "$net" | tr a-z A-Z)
  mkdir -p "$out/from_onnx"
  if "$CNNC" "$out/onnx/$net.onnx" --lib --loss softmax_cross_entropy -o "$out/from_onnx/lib$net.a" \
       > "$raw/full.onnx_compile.$net.log" 2>&1 &&
     $CC -O2 -DNET="$net" -DNETU="$NETU" -include "$out/from_onnx/$net.h" bench/peers/cnnc_bench.c \
       "$out/from_onnx/lib$net.a" -fopenmp -lm -o "$out/cnnc_bench_${net}_onnx" 2>> "$raw/full.onnx_compile.$net.log"; then
    onnx_nets="$onnx_nets $net"
  else
    note cnnc_onnx "$net: bin/cnnc $net.onnx --lib failed: $(tail -1 "$raw/full.onnx_compile.$net.log")"
  fi
done
[ -z "$onnx_nets" ] || say "cnnc: compiled from ONNX$onnx_nets"

run_torch_ob() {
  env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE=$(openblas_core) LD_LIBRARY_PATH="$obdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"
}
torch_args="--threads $threads --batch $batch --seconds $seconds --min-calls 2"

deadline=${FULL_DEADLINE:-0}
r=1 t_round=$(date +%s)
while [ "$r" -le "$rounds" ]; do
  if [ "$r" -gt 1 ] && [ "$deadline" -gt 0 ] && [ $(( $(date +%s) * 2 - t_round )) -gt "$deadline" ]; then
    say "no round $r: it would end past the --budget's share for the full-size nets"; break
  fi
  t_round=$(date +%s)
  for net in $nets; do
    say "round $r of $rounds: $net"
    case " $cnnc_nets " in *" $net "*)
      for mode in latency forward train; do
        "$out/cnnc_bench_$net" $mode --threads "$threads" --batch "$batch" --seconds "$seconds" --min-calls 2 \
          >> "$raw/full.r$r.cnnc.jsonl" 2>> "$raw/full.r$r.cnnc.err" ||
          note cnnc "$net $mode: exit $? $(tail -1 "$raw/full.r$r.cnnc.err")"
      done ;;
    esac
    case " $onnx_nets " in *" $net "*)
      for mode in latency forward; do
        "$out/cnnc_bench_${net}_onnx" $mode --threads "$threads" --batch "$batch" --seconds "$seconds" --min-calls 2 \
          2>> "$raw/full.r$r.cnnc_onnx.err" | sed 's/"system": *"cnnc"/"system": "cnnc_onnx"/' \
          >> "$raw/full.r$r.cnnc_onnx.jsonl"
      done ;;
    esac
    case " $tuned_nets " in *" $net "*)
      "$out/cnnc_bench_${net}_tuned" train --threads "$threads" --batch "$batch" --seconds "$seconds" --min-calls 2 \
        2>> "$raw/full.r$r.cnnc_tuned.err" | sed 's/"system": *"cnnc"/"system": "cnnc_tuned"/' \
        >> "$raw/full.r$r.cnnc_tuned.jsonl" ;;
    esac
    $PY bench/peers/torch_bench.py --nets "$net" $torch_args \
      >> "$raw/full.r$r.torch.jsonl" 2>> "$raw/full.r$r.torch.err" || true
    if [ -n "$obdir" ]; then
      run_torch_ob $PY bench/peers/torch_bench.py --system torch_openblas --nets "$net" $torch_args \
        >> "$raw/full.r$r.torch_openblas.jsonl" 2>> "$raw/full.r$r.torch_openblas.err" || true
    fi
    case " $ort_nets " in *" $net "*)
      node bench/peers/ort_bench.js "$out/onnx" --nets "$net" --threads "$threads" --batch "$batch" \
        --seconds "$seconds" --min-calls 2 >> "$raw/full.r$r.ort.jsonl" 2>> "$raw/full.r$r.ort.err" || true ;;
    esac
  done
  if [ -x build/bench/peak ]; then
    build/bench/peak >> "$raw/peak.jsonl" 2>> "$raw/peak.err" || note peak "the probe failed"
  fi
  r=$((r + 1))
done
printf '{"full_load_end": "%s", "full_rounds_done": %s}\n' "$(cut -d' ' -f1-3 /proc/loadavg)" $((r - 1)) >> "$raw/machine.json"
