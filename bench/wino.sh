#!/bin/sh
# im2col + GEMM vs Winograd F(2x2,3x3) and F(4x4,3x3) (lib/nn/kd_conv_wino.c)
# on every 3x3 stride-1 layer shape of the zoo of 32 channels and more, at
# batch 128: forward and backward (dx + dw) milliseconds, the median over
# KD_BENCH_ROUNDS rounds (default 5) in which the three alternate.
# KD_BENCH_THREADS (default 2).  The rule in kd_conv_wino.c comes from it.
cd "$(dirname "$0")/.." || exit 1
threads=${KD_BENCH_THREADS:-2}
rounds=${KD_BENCH_ROUNDS:-5}
bin=/tmp/kd_bench_wino.$$
trap 'rm -f "$bin"' EXIT
cc -std=c11 -D_GNU_SOURCE -fopenmp -O2 -march=native -Ilib $(pkg-config --cflags hdf5-serial) bench/wino.c lib/libkd.a \
    $(make -s --no-print-directory print-ldlibs) -o "$bin" || exit 1
# resnet18 (CIFAR stem); resnet8x4's first block; wrn_*_2 and resnet20's stages
"$bin" "$threads" "$rounds" 128,64,32,32,64 128,128,16,16,128 128,256,8,8,256 128,512,4,4,512 \
    128,32,32,32,64 128,32,32,32,32 128,64,16,16,64 128,128,8,8,128 128,32,16,16,32 128,64,8,8,64
