#!/bin/sh
# Inference images/s, kdpipe vs PyTorch, side by side: batch 128, 32x32,
# 1 channel, 2 threads, eval mode; resnet18 (CIFAR stem), resnet8x4, resnet20.
# Also kdpipe's GFLOP/s as a fraction of the sgemm peak measured in the same
# process, and the peak RSS of both (/usr/bin/time -v).
# KD_BENCH_SECS sets the timing window per model (default 4 s).
cd "$(dirname "$0")/.." || exit 1
secs=${KD_BENCH_SECS:-4}
threads=${KD_BENCH_THREADS:-2}
bin=/tmp/kd_bench_inference.$$
cc -std=c11 -D_GNU_SOURCE -fopenmp -O2 -march=${KD_BENCH_MARCH:-native} -Ilib $(pkg-config --cflags hdf5-serial) bench/inference.c lib/libkd.a \
    $(make -s --no-print-directory print-ldlibs) -o "$bin" || exit 1
py=/usr/bin/python3
rss() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1"; }
printf '%-10s %12s %12s %7s %9s %7s %10s %10s\n' model kdpipe_img/s torch_img/s ratio GFLOP/s of_peak kd_RSS_MB pt_RSS_MB
for arch in resnet18 resnet8x4 resnet20; do
    /usr/bin/time -v -o /tmp/kd_bench_t1.$$ "$bin" "$arch" "$threads" 128 32 "$secs" > /tmp/kd_bench_o1.$$ || exit 1
    # the peer gets the same BLIS kernels (PyTorch's BLAS may be BLIS too)
    id=$(sed -n 's/.*"blis_arch_type": "\([0-9]*\)".*/\1/p' /tmp/kd_bench_o1.$$)
    BLIS_ARCH_TYPE=$id /usr/bin/time -v -o /tmp/kd_bench_t2.$$ "$py" bench/inference_peer.py "$arch" "$threads" 128 32 "$secs" > /tmp/kd_bench_o2.$$ || exit 1
    $py - "$arch" "$(cat /tmp/kd_bench_o1.$$)" "$(cat /tmp/kd_bench_o2.$$)" "$(rss /tmp/kd_bench_t1.$$)" "$(rss /tmp/kd_bench_t2.$$)" <<'PY'
import json, sys
arch, a, b, ra, rb = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print("%-10s %12.1f %12.1f %6.2fx %9.1f %6.1f%% %10.0f %10.0f" % (arch, a["images_per_s"], b["images_per_s"],
      a["images_per_s"] / b["images_per_s"], a["gflops"], 100 * a["fraction"], ra / 1024, rb / 1024))
PY
done
echo "(sgemm peak $(sed -n 's/.*"sgemm_peak": \([0-9.]*\).*/\1/p' /tmp/kd_bench_o1.$$) GFLOP/s, BLIS kernels $(sed -n 's/.*"blis": "\([a-z0-9]*\)".*/\1/p' /tmp/kd_bench_o1.$$), $threads threads)"
rm -f "$bin" /tmp/kd_bench_t1.$$ /tmp/kd_bench_t2.$$ /tmp/kd_bench_o1.$$ /tmp/kd_bench_o2.$$
