#!/bin/sh
# Data-parallel training over Open MPI against one process, on LeNet and
# Fashion-MNIST (a subset of the training set, one epoch per run), on this
# machine. Writes bench/MPI_RESULTS.md.
#
#   sh bench/mpi/run.sh [--rounds N] [--examples N] [--net NAME]
#
# Systems, run in alternation, round after round (medians reported):
#   1p x 1t         ./NAME train --threads 1                   (one core: the computation per step)
#   1p x 2t         ./NAME train --threads 2                   (one process, two threads)
#   2r x 1t         mpirun -np 2 ./NAME_mpi train --threads 1  (Open MPI's default: shared memory)
#   2r x 1t one     the same with one bucket (CNNC_MPI_BUCKET_KB=1000000): the
#                   gradient's sum starts after the backward pass, nothing hidden
#   2r x 1t tcp     2r x 1t with --mca btl tcp,self            (loopback TCP, as between machines)
#   2r x 1t tcp one and with one bucket
# Each run's images/s is the training part of the epoch (train.c's epoch
# line). The MPI runs set CNNC_MPI_STATS=1, so rank 0 says the bytes of
# gradient summed per step, in how many buckets (allreduces), the share of
# them summed when its backward pass ended, and the time each step waited
# for the rest after it: the part of the communication not hidden behind
# it (with the wait for the slower rank).
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

# run NAME CMD...: one run; appends "NAME images/s bytes buckets %done ms_wait ms_compute ms_lone" to $out/raw
run() {
    name=$1; shift
    CNNC_MPI_STATS=1 "$@" >"$out/run.out" 2>&1 || { echo "bench/mpi: $name failed:" >&2; tail -5 "$out/run.out" >&2; return; }
    ips=$(sed -n 's/^epoch 1\/1 .* \([0-9,]*\) img\/s$/\1/p' "$out/run.out" | tr -d ,)
    stats=$(sed -n 's/^mpi: .* each summing \([0-9]*\) bytes of gradient in \([0-9]*\) buckets*, \([0-9]*\)% of them done .*; \([0-9.]*\) ms per step waiting .*, \([0-9.]*\) ms of computation between; \([0-9.]*\) ms for one.*/\1 \2 \3 \4 \5 \6/p' "$out/run.out")
    echo "$name ${ips:-0} ${stats:-- - - - - -}" >>"$out/raw"
    echo "bench/mpi: $name: ${ips:-?} img/s ${stats:+(bytes, buckets, % done by the end of backward, ms waiting, ms computing, ms lone allreduce: $stats)}" >&2
}
ONE="env CNNC_MPI_BUCKET_KB=1000000"
TCP="--mca btl tcp,self"
rm -f "$out/raw"
for r in $(seq "$rounds"); do
    run "1p_x_1t" "$out/$net" $TRAIN --threads 1
    run "1p_x_2t" "$out/$net" $TRAIN --threads 2
    run "2r_x_1t" mpirun -np 2 "$out/${net}_mpi" $TRAIN --threads 1
    run "2r_x_1t_one" $ONE mpirun -np 2 "$out/${net}_mpi" $TRAIN --threads 1
    run "2r_x_1t_tcp" mpirun -np 2 $TCP "$out/${net}_mpi" $TRAIN --threads 1
    run "2r_x_1t_tcp_one" $ONE mpirun -np 2 $TCP "$out/${net}_mpi" $TRAIN --threads 1
done

cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)
load=$(cut -d' ' -f1-3 /proc/loadavg)
# Under `chrt -f N sh bench/mpi/run.sh` (real-time priority: the runs go
# ahead of whatever else the machine is doing) the report says so.
policy=$(chrt -p $$ 2>/dev/null | sed -n 's/.*scheduling policy: //p' | head -n 1)
python3 - "$out/raw" "$net" "$examples" "$rounds" "$cpu" "$(nproc)" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$load" "$policy" \
    >bench/MPI_RESULTS.md <<'PY'
import statistics, sys
raw, net, examples, rounds, cpu, cores, date, load, policy = sys.argv[1:10]
rows = {}
for line in open(raw):
    f = line.split()
    rows.setdefault(f[0], []).append(f[1:])
med = lambda xs: statistics.median(xs) if xs else float('nan')
base = med([float(r[0]) for r in rows.get('1p_x_2t', [])])
print(f"# Data-parallel training over Open MPI ({net})\n")
print(f"bench/mpi/run.sh: {net}, batch from the .cnn, one epoch on {examples} Fashion-MNIST examples,")
print(f"median of {rounds} rounds, {date}. CPU: {cpu}, {cores} cores, shared with other jobs")
if policy in ('SCHED_FIFO', 'SCHED_RR'):
    print(f"(load average {load} at the end); run at real-time priority ({policy}, chrt), so the")
    print("other jobs wait while it runs.")
else:
    print(f"(load average {load} at the end): timings are noisy.")
print("The gradient is summed in buckets, each started as the backward pass finishes it (\"one bucket\":")
print("CNNC_MPI_BUCKET_KB=1000000, started after the backward pass). \"% summed\" is the share of the")
print("gradient's bytes whose sums rank 0 found done when its backward pass ended; \"ms waiting\" is")
print("the time a step waits for the rest after its backward pass: the communication not hidden")
print("behind it, with the wait for the slower rank; the last column is one sum of the whole")
print("gradient with every rank ready (after a barrier): the transfer alone.\n")
print("| system | images/s | vs 1 process x 2 threads | bytes per step | buckets | % summed when backward ended | ms waiting per step (not hidden) | ms computing per step | ms for a lone allreduce |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
names = {'1p_x_1t': '1 process x 1 thread', '1p_x_2t': '1 process x 2 threads',
         '2r_x_1t': '2 ranks x 1 thread (shared memory)', '2r_x_1t_one': '2 ranks x 1 thread, one bucket',
         '2r_x_1t_tcp': '2 ranks x 1 thread (--mca btl tcp,self)', '2r_x_1t_tcp_one': '2 ranks x 1 thread (tcp), one bucket'}
for k in names:
    rs = rows.get(k, [])
    ips = med([float(r[0]) for r in rs])
    num = lambda i: med([float(r[i]) for r in rs if r[i] != '-'])
    b, n, h, w, c, l = (num(1), num(2), num(3), num(4), num(5), num(6)) if k.startswith('2r') else (float('nan'),) * 6
    fmt = lambda v, p: '-' if v != v else f"{v:,.{p}f}"
    print(f"| {names[k]} | {fmt(ips, 0)} | {fmt(ips / base, 2)}x | {fmt(b, 0)} | {fmt(n, 0)} | {fmt(h, 0) + ('%' if h == h else '')} | {fmt(w, 3)} | {fmt(c, 3)} | {fmt(l, 3)} |")
print("\nEach round's images/s:\n")
for k in names:
    print(f"- {names[k]}: " + ", ".join(f"{float(r[0]):,.0f}" for r in rows.get(k, [])))
PY
cat bench/MPI_RESULTS.md
