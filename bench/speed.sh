#!/bin/sh
# Speed of the generated code on this machine: each example's `bench` command
# (forward latency at batch 1, forward throughput at batch 256, a training step
# at batch 64), with 1 and 2 threads, and the compile time. Writes bench/SPEED.md.
set -eu
cd "$(dirname "$0")/.."
out=build/bench
mkdir -p "$out"
{
  echo "# Speed of the generated code"
  echo
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $(date -u +%Y-%m-%d)."
  echo "Medians of repeated runs; the machine is shared, so expect noise of 10-20%."
  echo
  echo "| network | threads | compile (ms) | fwd latency b=1 (us) | fwd b=256 (img/s) | train b=64 (img/s) |"
  echo "|---|---|---|---|---|---|"
  for net in mlp lenet vgg_small; do
    ms=$(bin/cnnc "examples/$net.cnn" -o "$out/$net" -v 2>&1 | sed -n 's/^cnnc: total *\([0-9.]*\) ms/\1/p')
    for t in 1 2; do
      "$out/$net" bench --threads $t > "$out/$net.$t.txt"
      lat=$(sed -n 's/^forward latency.* \([0-9.]*\) us$/\1/p' "$out/$net.$t.txt")
      fwd=$(sed -n 's/^forward throughput.* \([0-9]*\) images\/s$/\1/p' "$out/$net.$t.txt")
      trn=$(sed -n 's/^training step.* \([0-9]*\) images\/s$/\1/p' "$out/$net.$t.txt")
      echo "| $net | $t | $ms | $lat | $fwd | $trn |"
    done
  done
} > bench/SPEED.md
cat bench/SPEED.md
