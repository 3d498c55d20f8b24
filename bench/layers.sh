#!/bin/sh
# Convolution GFLOP/s, kdpipe's kd_conv vs torch.nn.functional.conv2d, side
# by side shape by shape (alternating, so that a loaded machine hurts both
# alike; each side reports its fastest run): forward, and backward (dx + dw), at batch 128 on the layer shapes
# of resnet18 with the CIFAR stem at 32x32, a bottleneck 1x1 and a
# MobileNetV2 depthwise 3x3; plus the sgemm peak through kd_gemm.
# KD_BENCH_SECS: timing window per measurement (default 1 s);
# KD_BENCH_THREADS (default 2); KD_BENCH_N batch (default 128).
cd "$(dirname "$0")/.." || exit 1
secs=${KD_BENCH_SECS:-1}
threads=${KD_BENCH_THREADS:-2}
n=${KD_BENCH_N:-128}
bin=/tmp/kd_bench_layers.$$
trap 'rm -f "$bin"' EXIT
cc -std=c11 -D_GNU_SOURCE -fopenmp -O2 -march=${KD_BENCH_MARCH:-native} -Ilib $(pkg-config --cflags hdf5-serial) bench/layers.c lib/libkd.a \
    $(make -s --no-print-directory print-ldlibs) -o "$bin" || exit 1
py=/usr/bin/python3
peak=$("$bin" "$threads" "$secs" sgemm) || exit 1
id=$(sed -n 's/.*"blis": "\([a-z0-9]*\)".*/\1/p' <<EOT
$peak
EOT
)
#          name            N,C,H,W,O,k,stride,pad,groups
shapes="stem3x3          $n,3,32,32,64,3,1,1,1
layer1_3x3       $n,64,32,32,64,3,1,1,1
layer2_3x3_s2    $n,64,32,32,128,3,2,1,1
layer2_down1x1   $n,64,32,32,128,1,2,0,1
layer2_3x3       $n,128,16,16,128,3,1,1,1
layer3_3x3       $n,256,8,8,256,3,1,1,1
layer4_3x3       $n,512,4,4,512,3,1,1,1
pointwise1x1     $n,128,16,16,512,1,1,0,1
depthwise3x3     $n,144,16,16,144,3,1,1,144"
printf '%-15s %9s %9s %6s   %9s %9s %6s\n' shape kd_fwd pt_fwd ratio kd_bwd pt_bwd ratio
printf '%-15s %9s %9s %6s   %9s %9s %6s\n' '' GFLOP/s GFLOP/s '' GFLOP/s GFLOP/s ''
echo "$shapes" | while read -r name shape; do
    a=$("$bin" "$threads" "$secs" "$shape") || exit 1
    # the peer gets the same BLIS kernels (kdpipe picks them from cpuid; PyTorch's BLAS may be BLIS too)
    b=$(BLIS_ARCH_TYPE=${BLIS_ARCH_TYPE:-$id} "$py" bench/layers_peer.py "$threads" "$secs" "$shape") || exit 1
    $py - "$name" "$a" "$b" <<'PY'
import json, sys
name, a, b = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print("%-15s %9.1f %9.1f %5.2fx   %9.1f %9.1f %5.2fx" % (name, a["fwd_gflops"], b["fwd_gflops"],
      a["fwd_gflops"] / b["fwd_gflops"], a["bwd_gflops"], b["bwd_gflops"], a["bwd_gflops"] / b["bwd_gflops"]))
PY
done
echo "(ratio = kdpipe / PyTorch; sgemm peak $(sed -n 's/.*"sgemm_peak": \([0-9.]*\).*/\1/p' <<EOT
$peak
EOT
) GFLOP/s through kd_gemm at 2048^3, BLIS kernels $id, $threads threads, batch $n, $(uptime | sed 's/.*load/load/'))"
