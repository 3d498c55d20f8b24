#!/bin/sh
# SSA's cost inside a resnet20 training step at 32x32 (issue 15's target:
# the aggregation kernel at most 20 % of the step with k = 8): a CE step of
# batch B 3-channel images through kd_train, against kd_ssa forward+backward
# on the last stage's map [B,64,8,8] and against the whole dense term
# (kd_ssa_loss_step: aligner, aggregation, dense InfoNCE).  The share is of
# a step that includes it: kernel / (step + kernel).  Batches 64 and 256, k 8
# (and k 16 at 64).  KD_BENCH_SECS (default 4), KD_BENCH_THREADS (default 2).
cd "$(dirname "$0")/.." || exit 1
secs=${KD_BENCH_SECS:-4}
threads=${KD_BENCH_THREADS:-2}
bin=/tmp/kd_bench_ssa.$$
cc -std=c11 -D_GNU_SOURCE -fopenmp -O2 -march=${KD_BENCH_MARCH:-native} -Ilib $(pkg-config --cflags hdf5-serial) bench/ssa.c lib/libkd.a \
    $(make -s --no-print-directory print-ldlibs) -o "$bin" || exit 1
printf '%5s %3s %10s %10s %10s %13s %11s\n' batch k step_ms kernel_ms loss_ms kernel_share loss_share
for case in "64 8" "64 16" "256 8"; do
    set -- $case
    "$bin" "$threads" "$1" "$2" "$secs" | /usr/bin/python3 -c "
import json, sys
a = json.loads(sys.stdin.read())
print('%5d %3d %10.2f %10.3f %10.3f %12.1f%% %10.1f%%' % (a['batch'], a['k'], a['step_ms'], a['kernel_ms'],
      a['loss_ms'], 100 * a['kernel_share'], 100 * a['loss_share']))" || exit 1
done
echo "($threads threads; the kernel runs on one)"
rm -f "$bin"
