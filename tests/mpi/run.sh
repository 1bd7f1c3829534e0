#!/bin/sh
# run.sh: data-parallel training over Open MPI (cnnc --mpi, runtime/mpi.c,
# net.c's rt_net_train_shard, train.c's ranks), on examples/mlp.cnn and
# Fashion-MNIST, each rank with one thread (mpirun --oversubscribe: this
# machine may have fewer cores than ranks).
#
#   sh tests/mpi/run.sh            (from the repository's root, after `make`)
#
# (a) --mpi builds an executable linked with libmpi; without it nothing is;
#     --mpi with --lib is a usage error;
# (b) -np 2 and -np 3: one epoch reaches >= 82% test accuracy, and a rerun
#     writes a byte-identical checkpoint;
# (c) -np 1 writes the same checkpoint, byte for byte, as the build without
#     --mpi; -np 2 x 1 thread the same tensors and train loss as 1 process
#     x 2 threads; a batch smaller than the rank count (a rank with no
#     examples) trains as 1 process with that many threads; an --mpi
#     --sanitize build on 3 ranks x 2 threads with uneven shares runs clean
#     under ASan and UBSan; a network with batchnorm trains on 3 ranks,
#     their weights equal;
# (d) a 2-rank checkpoint resumes on 1 and on 3 ranks;
# (e) a rank killed with SIGKILL mid-training ends the job with a non-zero
#     exit within 60 s, and the last checkpoint loads with `eval`; Ctrl-C to
#     mpirun stops every rank after the same step with a checkpoint; a rank that
#     cannot read its data stops every rank, with its message;
# (f) examples/embed_mpi: a program's own MPI loop over the C API
#     (NAME_loss_grad, MPI_Allreduce, NAME_step) builds with mpicc and trains;
#     NAME_loss_grad then NAME_step equals NAME_train_step (tests/mpi/step_same.c);
# (g) the gradient's sums overlapped with the backward pass (runtime/buckets.c):
#     over TCP (with cnnc's eager limit and with Open MPI's) the weights of
#     shared memory; in many buckets they give the weights of one bucket (CNNC_MPI_BUCKET_KB
#     above the gradient's size), on the MLP and on LeNet, 2 ranks x 2 threads
#     and 3 ranks; CNNC_MPI_STATS says how many buckets and bytes per step.
# The last line is "N passed, N failed".

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
CNNC=$ROOT/bin/cnnc
T=$(mktemp -d "${TMPDIR:-/tmp}/test_mpi.XXXXXX") || exit 2
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT TERM
passed=0 failed=0

ok()   { passed=$((passed + 1)); echo "ok   $1"; }
bad()  { failed=$((failed + 1)); echo "FAIL $1"; [ -s "$T/err" ] && sed 's/^/     | /' "$T/err" | tail -n 8; }
check() { name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
# Runs the command: stdout in $T/out, stderr in $T/err, status in $rc.
run() { "$@" >"$T/out" 2>"$T/err"; rc=$?; }
# The test accuracy the last run printed ("test accuracy: 82.37%"), x 100.
acc() { sed -n 's/^test accuracy: \([0-9]*\)\.\([0-9]*\)%$/\1\2/p' "$T/out"; }
# The train loss of the last run's epoch line ("epoch 1/1  train loss 0.5074 ...").
train_loss() { sed -n 's/^epoch 1\/1  train loss \([0-9.]*\) .*/\1/p' "$T/out"; }
# The value of metadata key $2 in checkpoint $1.
meta() { head -c 4096 "$1" | tr ',{}' '\n\n\n' | sed -n "s/^\"$2\":\"\\(.*\\)\"$/\\1/p"; }
same_tensors() { python3 "$ROOT/tests/mpi/same_tensors.py" "$1" "$2" 2>"$T/err"; }

# Open MPI refuses root unless told; the tests run as root in containers.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN="timeout 300 mpirun --oversubscribe"
command -v mpirun >/dev/null && command -v mpicc >/dev/null || {
    echo "no mpirun or mpicc: apt-get install libopenmpi-dev openmpi-bin (make deps)"
    echo "0 passed, 1 failed"; exit 1; }
cd "$T" || exit 2

FULL="--train $DATA/train-images-idx3-ubyte.gz $DATA/train-labels-idx1-ubyte.gz
      --test $DATA/t10k-images-idx3-ubyte.gz $DATA/t10k-labels-idx1-ubyte.gz --threads 1"

# ---- (a) the builds ---------------------------------------------------------------
run "$CNNC" "$ROOT/examples/mlp.cnn" --mpi -o mlp_mpi
check "cnnc --mpi builds the MLP" [ $rc -eq 0 -a -x mlp_mpi ]
run "$CNNC" "$ROOT/examples/mlp.cnn" -o mlp
check "cnnc without --mpi builds it too" [ $rc -eq 0 -a -x mlp ]
check "the --mpi build links libmpi" sh -c 'ldd mlp_mpi | grep -q libmpi'
check "the plain build does not" sh -c '! ldd mlp | grep -q libmpi'
run "$CNNC" "$ROOT/examples/mlp.cnn" --mpi --lib -o libmlp.a
check "--mpi --lib: exit 2 with a message" sh -c "[ $rc -eq 2 ] && grep -q -- '--mpi builds an executable' '$T/err'"

# ---- (b) accuracy and reruns -----------------------------------------------------
for np in 2 3; do
    run $MPIRUN -np $np ./mlp_mpi train $FULL --epochs 1 --save np$np.ck
    a=$(acc)
    check "-np $np: one epoch, test accuracy ${a:-?}/100 % >= 82%" [ $rc -eq 0 -a "${a:-0}" -ge 8200 ]
    check "-np $np: the banner names the ranks" grep -q "data-parallel over $np processes" "$T/out"
    check "-np $np: rank 0 alone prints (one epoch line)" [ "$(grep -c '^epoch 1/1' "$T/out")" = 1 ]
    train_loss >np$np.loss
    run $MPIRUN -np $np ./mlp_mpi train $FULL --epochs 1 --save np$np.again.ck
    check "-np $np: a rerun writes a byte-identical checkpoint" cmp -s np$np.ck np$np.again.ck
    check "-np $np: the checkpoint says ranks $np" [ "$(meta np$np.ck ranks)" = $np ]
done

# ---- (c) the same weights as one process ----------------------------------------
run $MPIRUN -np 1 ./mlp_mpi train $FULL --epochs 1 --save np1.ck
run ./mlp train $FULL --epochs 1 --save plain.ck
check "-np 1 writes the checkpoint of the build without --mpi, byte for byte" cmp -s np1.ck plain.ck
run ./mlp train $FULL --threads 2 --epochs 1 --save plain2.ck
check "-np 2 x 1 thread: the tensors of 1 process x 2 threads" same_tensors np2.ck plain2.ck
# the ranks' losses summed with the gradient (mpi.c's start_status): the same sum
check "-np 2 x 1 thread: the train loss of 1 process x 2 threads ($(cat np2.loss) and $(train_loss))" \
    [ -s np2.loss -a "$(cat np2.loss)" = "$(train_loss)" ]
python3 - "$DATA" <<'EOF' || bad "cannot cut a 301-example subset"
import gzip, struct, sys
d = sys.argv[1] + '/'
ti = gzip.open(d + 'train-images-idx3-ubyte.gz').read()
tl = gzip.open(d + 'train-labels-idx1-ubyte.gz').read()
open('small-images', 'wb').write(struct.pack('>IIII', 0x803, 301, 28, 28) + ti[16:16 + 301 * 784])
open('small-labels', 'wb').write(struct.pack('>II', 0x801, 301) + tl[8:8 + 301])
EOF
SMALL="--train small-images small-labels --test small-images small-labels --epochs 1 --batch 2"
run $MPIRUN -np 3 ./mlp_mpi train $SMALL --threads 1 --save tiny3.ck
r3=$rc
run ./mlp train $SMALL --threads 2 --save tiny_plain.ck
check "batch 2 on 3 ranks (one has no examples; the last batch is 1): the tensors of 2 threads" \
    sh -c "[ $r3 -eq 0 ] && python3 '$ROOT/tests/mpi/same_tensors.py' tiny3.ck tiny_plain.ck"

run "$CNNC" "$ROOT/examples/mlp.cnn" --mpi --sanitize -o mlp_mpi_asan
# Open MPI's own allocations outlive MPI_Finalize: no leak checking here (the
# single-process suites check the runtime's leaks)
run env ASAN_OPTIONS=detect_leaks=0 $MPIRUN -np 3 -x ASAN_OPTIONS ./mlp_mpi_asan train \
    --train small-images small-labels --test small-images small-labels --epochs 1 --batch 5 --threads 2 --save asan.ck
check "AddressSanitizer and UBSan: 3 ranks x 2 threads, uneven shares, no report" \
    sh -c "[ $rc -eq 0 ] && ! grep -q 'Sanitizer\|runtime error' '$T/err' '$T/out'"
# 2 ranks sum by exchanging buckets (mpi.c), not by MPI_Iallreduce: the same
# under the sanitizers, with small buckets, and a batch of 1 (a rank without examples)
run env ASAN_OPTIONS=detect_leaks=0 CNNC_MPI_BUCKET_KB=1 $MPIRUN -np 2 -x ASAN_OPTIONS -x CNNC_MPI_BUCKET_KB \
    ./mlp_mpi_asan train $SMALL --batch 1 --threads 2 --save asan2.ck
r2=$rc
cat "$T/out" "$T/err" > asan2.log
run ./mlp train $SMALL --batch 1 --threads 2 --save asan2_plain.ck
check "AddressSanitizer and UBSan: 2 ranks x 2 threads exchanging 1 KiB buckets, batch 1, no report, the tensors of 1 process" \
    sh -c "[ $r2 -eq 0 ] && ! grep -q 'Sanitizer\|runtime error' asan2.log && python3 '$ROOT/tests/mpi/same_tensors.py' asan2.ck asan2_plain.ck"

# batchnorm: per-rank batch statistics, running statistics averaged over the
# ranks; train.c checks after each epoch that every rank holds the same weights
cat >bn.cnn <<'EOF'
network bnmlp
input  x : [1, 28, 28]
labels y : class(10)
x -> flatten -> dense(64) -> batchnorm -> relu -> dense(10) -> f
loss = softmax_cross_entropy(f, y)
train { optimizer = sgd(lr = 0.05, momentum = 0.9)  batch = 32 }
EOF
run "$CNNC" bn.cnn --mpi -o bn_mpi
run $MPIRUN -np 3 ./bn_mpi train $SMALL --batch 32 --epochs 2 --threads 1 --save bn.ck
check "batchnorm on 3 ranks: trains, and every rank holds the same weights after each epoch" \
    sh -c "[ $rc -eq 0 ] && ! grep -q 'weights differ' '$T/err' && [ '$(meta bn.ck epoch)' = 2 ]"

# ---- (d) resuming on another number of ranks --------------------------------------
for np in 1 3; do
    run $MPIRUN -np $np ./mlp_mpi train $FULL --epochs 2 --resume np2.ck --save resumed$np.ck
    a=$(acc)
    check "a 2-rank checkpoint resumes on $np rank(s): epoch 2 done, accuracy ${a:-?}/100 % >= 82%" \
        sh -c "[ $rc -eq 0 ] && grep -q 'resuming from np2.ck: 1 epochs done' '$T/out' &&
               [ '$(meta resumed$np.ck epoch)' = 2 ] && [ ${a:-0} -ge 8200 ]"
done

# ---- (e) faults -----------------------------------------------------------------
# The runs signalled below are asked for 60 epochs, far more than they get to:
# an epoch of the MLP on 2 ranks takes 0.3 s here, and with 6 the run could end
# before the signal that the check is about.
rm -f kill.ck pid.*
( $MPIRUN -np 2 sh -c 'echo $$ > pid.$OMPI_COMM_WORLD_RANK; exec ./mlp_mpi train "$@"' sh \
      $FULL --epochs 60 --save kill.ck >kill.out 2>&1; echo $? >kill.rc ) &
job=$!
i=0
while [ ! -f kill.ck ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done   # the first epoch's
sleep 1
kill -9 "$(cat pid.1)" 2>/dev/null
i=0
while [ ! -f kill.rc ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
kill_rc=$(cat kill.rc 2>/dev/null)
cp kill.out "$T/err"
check "a rank killed with SIGKILL: the job ends within 60 s, exit ${kill_rc:-none} (non-zero)" \
    sh -c "[ -n '$kill_rc' ] && [ '$kill_rc' != 0 ]"
check "... and mpirun says which rank died" grep -q "rank 1 .*signal 9" kill.out
wait $job 2>/dev/null
run ./mlp eval --weights kill.ck --test "$DATA/t10k-images-idx3-ubyte.gz" "$DATA/t10k-labels-idx1-ubyte.gz"
check "... and the last checkpoint loads with eval" sh -c "[ $rc -eq 0 ] && grep -q '^top-1' '$T/out'"

rm -f int.ck
# timeout --foreground passes SIGINT on to mpirun alone, which passes it on to
# the ranks, as Ctrl-C to mpirun does. (Without --foreground, timeout also
# signals its whole process group, the ranks too, racing mpirun's own abort:
# the check then failed in about 1 run of 10.)
timeout --foreground 300 mpirun --oversubscribe -np 2 ./mlp_mpi train $FULL --epochs 60 --save int.ck >int.out 2>&1 &
job=$!                                  # timeout, which passes SIGINT on to mpirun
i=0
while [ ! -f int.ck ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
sleep 1
kill -INT $job
wait $job
int_rc=$?
cp int.out "$T/err"
check "Ctrl-C to mpirun: every rank stops after the same step, rank 0 writes the checkpoint (exit $int_rc)" \
    sh -c "[ $int_rc != 0 ] && [ \$(grep -c 'interrupted .*; wrote int.ck' int.out) = 1 ] &&
           ./mlp eval --weights int.ck --test '$DATA/t10k-images-idx3-ubyte.gz' '$DATA/t10k-labels-idx1-ubyte.gz' >/dev/null"

run $MPIRUN -np 3 sh -c 'img=$1; shift; [ "$OMPI_COMM_WORLD_RANK" = 2 ] && img=missing-images.gz
                         exec ./mlp_mpi train --train "$img" "$@"' sh \
    small-images small-labels --epochs 1 --threads 1 --save never.ck
check "rank 2 cannot read its data: every rank stops, exit 1" [ $rc -eq 1 -a ! -f never.ck ]
check "... with its message, and rank 0 says which rank" \
    sh -c "grep -q 'missing-images.gz: cannot open' '$T/err' && grep -q 'rank 2 of 3 failed to start' '$T/err'"
run $MPIRUN -np 3 ./mlp_mpi train --train missing-images.gz small-labels --epochs 1
check "every rank lacks the data: exit 1, the message said once" \
    sh -c "[ $rc -eq 1 ] && [ \$(grep -c 'missing-images.gz: cannot open' '$T/err') = 1 ]"

# ---- (f) the C API's step in a program's own MPI loop ------------------------------
run sh "$ROOT/examples/embed_mpi/build.sh" "$CNNC" "$T/embed"
check "examples/embed_mpi builds with mpicc, without a warning" sh -c "[ $rc -eq 0 ] && [ ! -s '$T/err' ]"
run $MPIRUN -np 2 "$T/embed/train_mpi" small-images small-labels
a=$(sed -n 's/^training accuracy: \([0-9]*\)\.\([0-9]*\)%$/\1\2/p' "$T/out")
check "examples/embed_mpi on 2 ranks: the ranks' weights agree, training accuracy ${a:-?}/100 % >= 70%" \
    sh -c "[ $rc -eq 0 ] && grep -q 'weights identical on 2 ranks' '$T/out' && [ ${a:-0} -ge 7000 ]"

run sh -c "cc -std=c99 -Wall -Wextra -I'$T/embed' '$ROOT/tests/mpi/step_same.c' '$T/embed/libmlp.a' \
           -fopenmp -lm -o step_same && ./step_same"
check "NAME_loss_grad then NAME_step: the weights of NAME_train_step, bit for bit" [ $rc -eq 0 ]

# ---- (g) buckets: the sums behind the backward pass -------------------------------
ONE=CNNC_MPI_BUCKET_KB=1000000          # above any gradient here: one bucket, after the kernel
run env $ONE $MPIRUN -np 2 ./mlp_mpi train $FULL --epochs 1 --save one2.ck
check "-np 2, one bucket: the checkpoint of many buckets, byte for byte" sh -c "[ $rc -eq 0 ] && cmp -s one2.ck np2.ck"
# over TCP, with cnnc's eager limit (1 MiB: a bucket in one message) and with
# Open MPI's own (64 KiB, set on the command line: the user's choice wins)
run $MPIRUN -np 2 --mca btl tcp,self ./mlp_mpi train $FULL --epochs 1 --save tcp2.ck
check "-np 2 over TCP: the checkpoint of shared memory, byte for byte" sh -c "[ $rc -eq 0 ] && cmp -s tcp2.ck np2.ck"
run $MPIRUN -np 2 --mca btl tcp,self --mca btl_tcp_eager_limit 65536 ./mlp_mpi train $FULL --epochs 1 \
    --save tcp2r.ck
check "... with Open MPI's 64 KiB eager limit (rendezvous): the same, byte for byte" \
    sh -c "[ $rc -eq 0 ] && cmp -s tcp2r.ck np2.ck"
# bytes and buckets per step: "each summing B bytes of gradient in N buckets" (one
# bucket sends a few bytes more: the padding between parameters, as one run)
stats() { sed -n 's/^mpi: .* each summing \([0-9]*\) bytes of gradient in \([0-9]*\) bucket.*/\1 \2/p' "$T/err"; }
run "$CNNC" "$ROOT/examples/lenet.cnn" --mpi -o lenet_mpi
LENET="--train small-images small-labels --test small-images small-labels --epochs 1 --batch 32"
for np_t in "2 2" "3 1"; do
    set -- $np_t
    run env CNNC_MPI_STATS=1 $MPIRUN -np $1 ./lenet_mpi train $LENET --threads $2 --save lenet$1.ck
    s=$(stats)
    check "LeNet on $1 ranks x $2 threads: CNNC_MPI_STATS says ${s:-?} (bytes, buckets): more than 1 bucket" \
        sh -c "[ $rc -eq 0 ] && [ -n '$s' ] && [ ${s#* } -gt 1 ]"
    run env $ONE CNNC_MPI_STATS=1 $MPIRUN -np $1 ./lenet_mpi train $LENET --threads $2 \
        --save lenet$1.one.ck
    s1=$(stats)
    check "... one bucket (${s1:-?}): the checkpoint of many buckets, byte for byte" \
        sh -c "[ $rc -eq 0 ] && [ '${s1#* }' = 1 ] && cmp -s lenet$1.ck lenet$1.one.ck"
done

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
