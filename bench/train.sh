#!/bin/sh
# Training images/s, kdpipe vs PyTorch, side by side: batch 128, 32x32,
# 1 channel, 2 threads, one SGD step per batch (BN in training mode):
# resnet18 (CIFAR stem), resnet8x4, resnet20; then a MoCo v2 step on resnet20
# (key forward with shuffle-BN groups, query forward+backward, queue 4096).
# GFLOP/s counts a training step as 3 forwards (4 for MoCo), as a fraction of
# the sgemm peak measured in the same process.
# KD_BENCH_SECS sets the timing window per case (default 6 s).
cd "$(dirname "$0")/.." || exit 1
secs=${KD_BENCH_SECS:-6}
threads=${KD_BENCH_THREADS:-2}
bin=/tmp/kd_bench_train.$$
cc -std=c11 -D_GNU_SOURCE -fopenmp -O2 -march=${KD_BENCH_MARCH:-native} -Ilib $(pkg-config --cflags hdf5-serial) bench/train.c lib/libkd.a \
    $(make -s --no-print-directory print-ldlibs) -o "$bin" || exit 1
py=/usr/bin/python3
printf '%-5s %-10s %12s %12s %7s %9s %7s\n' mode model kdpipe_img/s torch_img/s ratio GFLOP/s of_peak
for case in "ce resnet18" "ce resnet8x4" "ce resnet20" "moco resnet20"; do
    set -- $case
    "$bin" "$1" "$2" "$threads" 128 32 "$secs" > /tmp/kd_bench_o1.$$ || exit 1
    id=$(sed -n 's/.*"blis_arch_type": "\([0-9]*\)".*/\1/p' /tmp/kd_bench_o1.$$)
    BLIS_ARCH_TYPE=$id "$py" bench/train_peer.py "$1" "$2" "$threads" 128 32 "$secs" > /tmp/kd_bench_o2.$$ || exit 1
    $py - "$(cat /tmp/kd_bench_o1.$$)" "$(cat /tmp/kd_bench_o2.$$)" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("%-5s %-10s %12.1f %12.1f %6.2fx %9.1f %6.1f%%" % (a["mode"], a["arch"], a["images_per_s"], b["images_per_s"],
      a["images_per_s"] / b["images_per_s"], a["gflops"], 100 * a["fraction"]))
PY
done
echo "(sgemm peak $(sed -n 's/.*"sgemm_peak": \([0-9.]*\).*/\1/p' /tmp/kd_bench_o1.$$) GFLOP/s, BLIS kernels $(sed -n 's/.*"blis": "\([a-z0-9]*\)".*/\1/p' /tmp/kd_bench_o1.$$), $threads threads)"
rm -f "$bin" /tmp/kd_bench_o1.$$ /tmp/kd_bench_o2.$$
