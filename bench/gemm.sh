#!/bin/sh
# sgemm GFLOP/s: the kernels kdpipe selects vs BLIS's own pick (generic here).
cd "$(dirname "$0")/.." || exit 1
cc -std=c11 -D_GNU_SOURCE -fopenmp -O2 -Ilib bench/gemm.c lib/libkd.a $(make -s --no-print-directory print-ldlibs) -o /tmp/kd_bench_gemm || exit 1
for t in 1 2; do
    sel=$(/tmp/kd_bench_gemm $t)
    gen=$(BLIS_ARCH_TYPE=generic /tmp/kd_bench_gemm $t)
    echo "selected: $sel"
    echo "generic:  $gen"
    python3 -c "import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); print('threads=%d  square2048 %.1f vs %.1f GFLOP/s = %.1fx' % (a['threads'], a['square2048'], b['square2048'], a['square2048']/b['square2048']))" "$sel" "$gen"
done
