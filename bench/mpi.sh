#!/bin/sh
# bench/mpi.sh [WORKDIR] — data-parallel distill-step (issue 18): images/s
# of 2 ranks x 1 thread against 1 process x 2 threads on the same global
# batch, the bytes allreduced per step, and a paper estimate of 8 and 64
# ranks (ring allreduce: 2(N-1)/N x bytes / bandwidth, after the backward,
# not overlapped with it) from the measured compute time per step.
#   ARCH=resnet18  BATCH=64 (global)  N=192 (images: N/BATCH steps)  REPS=2
# (the best of REPS runs of each, interleaved: the machine is shared)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/bin
W=${1:-${TMPDIR:-/tmp}/kd-bench-mpi}
ARCH=${ARCH:-resnet18}
BATCH=${BATCH:-64}
N=${N:-192}
REPS=${REPS:-2}
mkdir -p "$W"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
# a shared machine: a rank waiting in a collective yields its core
export OMPI_MCA_mpi_yield_when_idle=1
"$B/distill-step" --version | grep -q "^MPI: Open" || { echo "bench/mpi.sh: distill-step is built without MPI" >&2; exit 1; }
now() { date +%s.%N; }
[ -s "$W/fm.h5" ] || "$B/dataset" /usr/share/datasets/fashion-mnist --split train --limit "$N" -o "$W/fm.h5" >/dev/null
[ -s "$W/m.h5" ] || "$B/model-init" --arch "$ARCH" --in-channels 1 --num-classes 10 -o "$W/m.h5" >/dev/null
AUG="$B/augment --policy crop-flip --views 1 --batch $BATCH --seed 3 --quiet"
[ -s "$W/s.kdt" ] || $AUG "$W/fm.h5" > "$W/s.kdt"
for r in 0 1; do [ -s "$W/s$r.kdt" ] || $AUG --shard $r/2 "$W/fm.h5" > "$W/s$r.kdt"; done
DS="$B/distill-step --method ce --schedule const --sync-bn --quiet -m $W/m.h5"
steps=$((N / BATCH))
echo "# CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, shared with other jobs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $ARCH, Fashion-MNIST 28x28 crop-flip, global batch $BATCH, $steps steps of ce with --sync-bn, streams from files, the best of $REPS"
min() { if [ -z "$1" ] || [ "$(echo "$2 < $1" | bc)" = 1 ]; then echo "$2"; else echo "$1"; fi; }
t1="" t11="" t2=""
for r in $(seq "$REPS"); do
    t0=$(now); $DS --threads 2 -o "$W/o1.h5" < "$W/s.kdt" > /dev/null; t1=$(min "$t1" "$(echo "$(now) - $t0" | bc)")
    t0=$(now); $DS --threads 1 -o "$W/o0.h5" < "$W/s.kdt" > /dev/null; t11=$(min "$t11" "$(echo "$(now) - $t0" | bc)")
    t0=$(now)
    mpirun --oversubscribe --bind-to none -np 2 sh -c "exec $DS --threads 1 -o $W/o2.h5 < $W/s\$OMPI_COMM_WORLD_RANK.kdt" > /dev/null
    t2=$(min "$t2" "$(echo "$(now) - $t0" | bc)")
done
printf '1 process x 2 threads   %8.2f s  %6.1f img/s\n' "$t1" "$(echo "$N / $t1" | bc -l)"
printf '1 process x 1 thread    %8.2f s  %6.1f img/s\n' "$t11" "$(echo "$N / $t11" | bc -l)"
printf '2 ranks x 1 thread      %8.2f s  %6.1f img/s  (with mpirun start-up)\n' "$t2" "$(echo "$N / $t2" | bc -l)"
# bytes per step: the gradient slab (4 B a parameter) in one allreduce; sync-BN
# 8 B x (2C+1) forward and (2C+1) backward per BN layer of C channels; the
# ranks' agreement, 24 B a rank, and the loss terms
/usr/bin/python3 - "$W/m.h5" "$t11" "$steps" "$BATCH" <<'EOF'
import sys, h5py
f = h5py.File(sys.argv[1])
P = sum(v.size for k, v in f.items() if isinstance(v, h5py.Dataset) and not any(
    s in k for s in ("running_", "num_batches")))
bn = [v.size for k, v in f.items() if k.endswith("running_mean")]
grad = 4 * P
sync = sum(8 * (2 * c + 1) * 2 for c in bn)
print("bytes allreduced per step: gradients %.1f MB (%d parameters), sync-BN %.1f kB in %d calls, "
      "control 24 B x ranks" % (grad / 1e6, P, sync / 1e3, 4 * len(bn)))
t_step = float(sys.argv[2]) / int(sys.argv[3])  # one thread, global batch
b = int(sys.argv[4])
print("compute: %.2f s a step of %d images on one thread here, %.2f s a step of %d per rank (half)"
      % (t_step, b, t_step / 2, b // 2))
print("ranks  per-rank batch  compute/step  allreduce 10 Gbit/s  100 Gbit/s  efficiency 10 / 100")
for R in (2, 8, 64):
    tc = t_step / 2  # weak scaling: every rank keeps batch b/2
    a10 = 2 * (R - 1) / R * grad / (10e9 / 8)
    a100 = 2 * (R - 1) / R * grad / (100e9 / 8)
    print("%5d  %14d  %10.3f s  %17.3f s  %8.4f s  %6.1f%% / %5.1f%%"
          % (R, b // 2, tc, a10, a100, 100 * tc / (tc + a10), 100 * tc / (tc + a100)))
EOF
