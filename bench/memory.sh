#!/bin/sh
# memory.sh: the memory of training steps, measured, into bench/MEMORY.md.
#
#   sh bench/memory.sh         (from anywhere, after `make all`; about 2 minutes)
#
# (1) ResNet-18 at batch 16 on 2 threads, two training steps with SGD
#     momentum: the peak RSS of a process running cnnc's (bench/memory_step.c
#     through the C API of examples/resnet18.cnn, or bench/resnet18_bindings.cnn
#     when this cnnc cannot compile the former) against one running PyTorch's
#     (bench/memory_torch.py: torchvision's resnet18, /usr/bin/python3). Each is
#     run RUNS times (default 3) in a fresh process; the table gives the median.
# (2) What cnnc --summary predicts against what the process took: LeNet,
#     vgg_small (batch 64) and ResNet-18 (batch 16), one thread, a forward
#     call and two training steps; the growth of the resident set from before
#     NAME_new to the peak, against --summary's "total".
# CC (default cc) builds the drivers; build/bench/memory/ holds them.
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
CC=${CC:-cc}
out=build/bench/memory
mkdir -p "$out"
[ -x bin/cnnc ] || { echo "memory.sh: no bin/cnnc; run make all first" >&2; exit 2; }

# driver SRC NAME BATCH: build/bench/memory/memory_NAME, the .cnn's batch set to BATCH
driver() {
    upper=$(echo "$2" | tr a-z A-Z)
    sed "s/batch = [0-9]*/batch = $3/" "$1" >"$out/$2.cnn"
    bin/cnnc "$out/$2.cnn" --lib -o "$out/lib$2.a"
    bin/cnnc "$out/$2.cnn" --summary >"$out/$2.summary"
    $CC -O2 -DNET="$2" -DNETU="$upper" -include "$out/$2.h" bench/memory_step.c "$out/lib$2.a" \
        -fopenmp -lm -o "$out/memory_$2"
}
# field JSON KEY: the number of "KEY": N in the JSON line
field() { echo "$1" | sed -n "s/.*\"$2\": \([-0-9.]*\).*/\1/p"; }
# median of the numbers on stdin
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

resnet=examples/resnet18.cnn
bin/cnnc "$resnet" --check 2>/dev/null || resnet=bench/resnet18_bindings.cnn
echo "ResNet-18 from $resnet"
driver "$resnet" resnet18 16
cnnc_peaks="" torch_peaks="" cnnc_json="" torch_json=""
for i in $(seq "$RUNS"); do
    cnnc_json=$("$out/memory_resnet18" 16 2 2)
    echo "$cnnc_json"
    cnnc_peaks="$cnnc_peaks $(field "$cnnc_json" peak_rss_mb)"
    torch_json=$(/usr/bin/python3 bench/memory_torch.py --batch 16 --threads 2 --steps 2)
    echo "$torch_json"
    torch_peaks="$torch_peaks $(field "$torch_json" peak_rss_mb)"
done
cnnc_peaks=$(echo $cnnc_peaks) torch_peaks=$(echo $torch_peaks)     # without the leading space
cnnc_peak=$(echo $cnnc_peaks | tr ' ' '\n' | median)
torch_peak=$(echo $torch_peaks | tr ' ' '\n' | median)

# (2) prediction against growth
rows=""
for spec in examples/lenet.cnn:lenet:64 examples/vgg_small.cnn:vgg_small:64 "$resnet:resnet18:16"; do
    src=${spec%%:*} rest=${spec#*:}
    name=${rest%%:*} batch=${rest#*:}
    [ "$name" = resnet18 ] || driver "$src" "$name" "$batch"
    json=$("$out/memory_$name" "$batch" 1 2 forward)
    echo "$json"
    total=$(sed -n 's/^  total .* \([0-9,]*\) bytes$/\1/p' "$out/$name.summary" | tr -d ,)
    rows="$rows$(echo "$json" | awk -v name="$name" -v batch="$batch" -v total="$total" -F'[:,}]' '{
        for (i = 1; i < NF; i++) { k = $i; gsub(/[ "{]/, "", k); v[k] = $(i + 1) + 0 }
        pred = total / 1048576; grow = v["peak_rss_mb"] - v["rss_start_mb"]
        printf "| %s | %d | %.1f MiB | %.1f MiB | %+.1f MiB (%+.1f%%) |", name, batch, pred, grow, grow - pred, 100 * (grow - pred) / pred
    }')
"
done

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
torch_version=$(echo "$torch_json" | sed -n 's/.*"system": "torch \([^"]*\)".*/\1/p')
verdict="no more than"
awk -v c="$cnnc_peak" -v t="$torch_peak" 'BEGIN { exit !(c > t) }' && verdict="MORE than"
cat >bench/MEMORY.md <<EOM
# Memory of a training step: cnnc and PyTorch

Written by \`sh bench/memory.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), cnnc at commit $commit,
on $(nproc) cores of an $cpu (a machine shared with other jobs: timings are
noisy, resident sets are not).

## ResNet-18, batch 16, 2 threads

Two training steps (SGD, momentum 0.9, weight decay 1e-4, cross-entropy) on one
batch of random 3x224x224 inputs, each system in a fresh process, $RUNS runs;
the peak resident set of the whole process (ru_maxrss), median of the runs:

| system | network | peak RSS | before the network | the runs' peaks |
|---|---|---|---|---|
| cnnc (bench/memory_step.c) | $resnet | $cnnc_peak MiB | $(field "$cnnc_json" rss_start_mb) MiB | $cnnc_peaks MiB |
| PyTorch $torch_version (bench/memory_torch.py) | torchvision.models.resnet18() | $torch_peak MiB | $(field "$torch_json" rss_start_mb) MiB | $torch_peaks MiB |

cnnc's training step needs $verdict PyTorch's. "Before the network" is the
process with its libraries and the batch of inputs, before the network is
made (cnnc: before NAME_new; PyTorch: after importing torch and torchvision).
A network with batchnorm trains on one thread in cnnc (batch statistics), so
cnnc's workspace is one thread's; PyTorch runs its 2 threads.

## What --summary predicts, and what the process took

One thread, a forward call and two training steps at the batch; the
prediction is the "total" of \`cnnc --summary\` (and of the program's \`info\`),
the growth is the peak resident set minus the resident set before NAME_new
(it also holds what OpenMP and libc allocate for the run, and pages of the
program touched for the first time):

| network | batch | --summary total | RSS growth | difference |
|---|---|---|---|---|
$(printf '%s' "$rows")
EOM
echo "wrote bench/MEMORY.md"
cat bench/MEMORY.md
