#!/bin/sh
# Data-parallel training over Open MPI against one process, on LeNet and
# Fashion-MNIST (a subset of the training set, one epoch per run), on this
# machine. Writes bench/MPI_RESULTS.md.
#
#   sh bench/mpi/run.sh [--rounds N] [--examples N] [--net NAME]
#
# Systems, run in alternation, round after round (medians reported):
#   1p x 1t     ./NAME train --threads 1                   (one core: the computation per step)
#   1p x 2t     ./NAME train --threads 2                   (one process, two threads)
#   2r x 1t     mpirun -np 2 ./NAME_mpi train --threads 1  (Open MPI's default: shared memory)
#   2r x 1t tcp the same with --mca btl tcp,self           (loopback TCP, as between machines)
# Each run's images/s is the training part of the epoch (train.c's epoch
# line). The MPI runs set CNNC_MPI_STATS=1, so rank 0 says the bytes of each
# gradient allreduce and the time spent in it: the allreduce is blocking, so
# all of that time is exposed (not hidden behind the backward pass).
set -u
cd "$(dirname "$0")/../.."
rounds=3 examples=20000 net=lenet
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --examples) examples=$2; shift 2 ;;
    --net) net=$2; shift 2 ;;
    *) echo "usage: sh bench/mpi/run.sh [--rounds N] [--examples N] [--net NAME]" >&2; exit 2 ;;
  esac
done
DATA=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
out=build/bench/mpi
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bin/cnnc "examples/$net.cnn" -o "$out/$net" || exit 1
bin/cnnc "examples/$net.cnn" --mpi -o "$out/${net}_mpi" || exit 1
python3 - "$DATA" "$out" "$examples" <<'PY' || exit 1
import gzip, struct, sys
d, out, n = sys.argv[1] + '/', sys.argv[2] + '/', int(sys.argv[3])
ti = gzip.open(d + 'train-images-idx3-ubyte.gz').read()
tl = gzip.open(d + 'train-labels-idx1-ubyte.gz').read()
open(out + 'images', 'wb').write(struct.pack('>IIII', 0x803, n, 28, 28) + ti[16:16 + n * 784])
open(out + 'labels', 'wb').write(struct.pack('>II', 0x801, n) + tl[8:8 + n])
PY
TRAIN="train --train $out/images $out/labels --epochs 1 --save $out/bench.ck"

# run NAME CMD...: one run; appends "NAME images/s bytes ms_allreduce ms_compute ms_lone" to $out/raw
run() {
    name=$1; shift
    CNNC_MPI_STATS=1 "$@" >"$out/run.out" 2>&1 || { echo "bench/mpi: $name failed:" >&2; tail -5 "$out/run.out" >&2; return; }
    ips=$(sed -n 's/^epoch 1\/1 .* \([0-9,]*\) img\/s$/\1/p' "$out/run.out" | tr -d ,)
    stats=$(sed -n 's/^mpi: .* allreduces of \([0-9]*\) bytes; \([0-9.]*\) ms in each (not hidden), \([0-9.]*\) ms of computation between them; \([0-9.]*\) ms for one.*/\1 \2 \3 \4/p' "$out/run.out")
    echo "$name ${ips:-0} ${stats:-- - - -}" >>"$out/raw"
    echo "bench/mpi: $name: ${ips:-?} img/s ${stats:+(bytes, ms in allreduce, ms computing, ms lone allreduce: $stats)}" >&2
}
rm -f "$out/raw"
for r in $(seq "$rounds"); do
    run "1p_x_1t" "$out/$net" $TRAIN --threads 1
    run "1p_x_2t" "$out/$net" $TRAIN --threads 2
    run "2r_x_1t" mpirun -np 2 "$out/${net}_mpi" $TRAIN --threads 1
    run "2r_x_1t_tcp" mpirun -np 2 --mca btl tcp,self "$out/${net}_mpi" $TRAIN --threads 1
done

cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)
python3 - "$out/raw" "$net" "$examples" "$rounds" "$cpu" "$(nproc)" >bench/MPI_RESULTS.md <<'PY'
import statistics, sys
raw, net, examples, rounds, cpu, cores = sys.argv[1:7]
rows = {}
for line in open(raw):
    f = line.split()
    rows.setdefault(f[0], []).append(f[1:])
med = lambda xs: statistics.median(xs) if xs else float('nan')
base = med([float(r[0]) for r in rows.get('1p_x_2t', [])])
print(f"# Data-parallel training over Open MPI ({net})\n")
print(f"bench/mpi/run.sh: {net}, batch from the .cnn, one epoch on {examples} Fashion-MNIST examples,")
print(f"median of {rounds} rounds. CPU: {cpu}, {cores} cores (shared: timings are noisy).")
print("The allreduce blocks after the backward pass: the time in it is all exposed, and includes")
print("waiting for the slower rank; the last column is one allreduce of the same size with every")
print("rank ready (after a barrier): the transfer alone.\n")
print("| system | images/s | vs 1 process x 2 threads | bytes per allreduce | ms in allreduce per step (exposed) | ms computing per step | ms for a lone allreduce |")
print("|---|---:|---:|---:|---:|---:|---:|")
names = {'1p_x_1t': '1 process x 1 thread', '1p_x_2t': '1 process x 2 threads', '2r_x_1t': '2 ranks x 1 thread (shared memory)',
         '2r_x_1t_tcp': '2 ranks x 1 thread (--mca btl tcp,self)'}
for k in ['1p_x_1t', '1p_x_2t', '2r_x_1t', '2r_x_1t_tcp']:
    rs = rows.get(k, [])
    ips = med([float(r[0]) for r in rs])
    num = lambda i: med([float(r[i]) for r in rs if r[i] != '-'])
    b, a, c, l = (num(1), num(2), num(3), num(4)) if k.startswith('2r') else (float('nan'),) * 4
    fmt = lambda v, p: '-' if v != v else f"{v:,.{p}f}"
    print(f"| {names[k]} | {fmt(ips, 0)} | {fmt(ips / base, 2)}x | {fmt(b, 0)} | {fmt(a, 3)} | {fmt(c, 3)} | {fmt(l, 3)} |")
PY
cat bench/MPI_RESULTS.md
