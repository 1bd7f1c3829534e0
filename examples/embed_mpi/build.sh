#!/bin/sh
# build.sh [CNNC [OUT]]: builds OUT/train_mpi (default build/embed_mpi) from
# examples/mlp.cnn's library and train_mpi.c, with Open MPI's mpicc.
set -e
here=$(cd "$(dirname "$0")" && pwd)
cnnc=${1:-$here/../../bin/cnnc}
out=${2:-build/embed_mpi}
mkdir -p "$out"
"$cnnc" "$here/../mlp.cnn" --lib -o "$out/libmlp.a"
mpicc -std=c99 -O2 -Wall -Wextra -pedantic -I"$out" "$here/train_mpi.c" "$out/libmlp.a" \
      -fopenmp -lm -o "$out/train_mpi"
