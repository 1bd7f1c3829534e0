#!/bin/sh
# Trains each normative example with its own train { } settings on
# Fashion-MNIST with the generated executable, and records the final test
# accuracy and the time per epoch in bench/ACCURACY.md.
#   sh bench/accuracy.sh [NET...]      (default: all five)
set -eu
cd "$(dirname "$0")/.."
data=/usr/share/datasets/fashion-mnist
nets=${*:-"linear_svm two_layer mlp lenet vgg_small"}
out=build/accuracy
mkdir -p "$out"
for net in $nets; do
  bin/cnnc "examples/$net.cnn" -o "$out/$net"
  start=$(date +%s)
  "$out/$net" train --threads 2 \
      --train "$data/train-images-idx3-ubyte.gz" "$data/train-labels-idx1-ubyte.gz" \
      --test "$data/t10k-images-idx3-ubyte.gz" "$data/t10k-labels-idx1-ubyte.gz" \
      --save "$out/$net.ckpt.safetensors" --log "$out/$net.csv" > "$out/$net.log" 2>&1
  secs=$(( $(date +%s) - start ))
  epochs=$(tail -n +2 "$out/$net.csv" | wc -l)
  acc=$(sed -n 's/^test accuracy: //p' "$out/$net.log")
  echo "$net $epochs $acc $secs" | tee -a "$out/results.txt"
done
{
  echo "# Fashion-MNIST test accuracy of the normative examples"
  echo
  echo "Each trained by its generated executable with the .cnn's own train { } settings,"
  echo "2 threads, on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%d)."
  echo
  echo "| network | epochs | test accuracy | seconds per epoch |"
  echo "|---|---|---|---|"
  sort -u -k1,1 "$out/results.txt" | while read -r net epochs acc secs; do
    echo "| $net | $epochs | $acc | $(awk -v s="$secs" -v e="$epochs" 'BEGIN { printf "%.1f", s / e }') |"
  done
} > bench/ACCURACY.md
cat bench/ACCURACY.md
