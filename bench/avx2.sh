#!/bin/sh
# The AVX2 code paths of both sides, on any x86-64 machine with AVX2 (on an
# AVX-512 one too): kdpipe rebuilt with -march=haswell in a scratch copy of
# this tree (its own vector kernels then use 8-float vectors) with BLIS's
# haswell kernels, PyTorch's oneDNN limited to AVX2 (ONEDNN_MAX_CPU_ISA) on
# the same BLIS kernels.  Runs bench/X.sh for X in KD_AVX2_BENCH (default:
# train inference layers) in the copy; their own knobs (KD_BENCH_SECS...)
# pass through.
cd "$(dirname "$0")/.." || exit 1
grep -q avx2 /proc/cpuinfo || { echo "avx2: this CPU has no AVX2" >&2; exit 1; }
tmp=$(mktemp -d /tmp/kd_avx2.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
git ls-files -z | xargs -0 tar -cf - | tar -xf - -C "$tmp" || exit 1
echo "avx2: building kdpipe with -march=haswell in $tmp" >&2
make -C "$tmp" -s -j2 OPT="-O2 -march=haswell" lib/libkd.a > "$tmp/build.log" 2>&1 || { cat "$tmp/build.log" >&2; exit 1; }
export KD_BENCH_MARCH=haswell BLIS_ARCH_TYPE=haswell ONEDNN_MAX_CPU_ISA=AVX2
status=0
for b in ${KD_AVX2_BENCH:-train inference layers}; do
    echo "== bench/$b.sh (AVX2: -march=haswell, BLIS haswell, oneDNN AVX2)"
    sh "$tmp/bench/$b.sh" || status=1
done
exit $status
