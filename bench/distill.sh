#!/bin/sh
# bench/distill.sh [WORKDIR] — the user-level number: one epoch of DisCo
# distillation on Fashion-MNIST (28x28x1), a resnet8x4 teacher and a
# resnet20 student, both with a 2048 -> 128 head (model-init'ed: the speed
# does not depend on the weights), MoCo v2 views, as the kdpipe pipeline
#   augment --policy mocov2 --views 2 | teacher-extract -m t.h5 \
#     | distill-step --loss moco:1,disco:32 -m s0.h5 -o out.h5
# against bench/distill_peer.py, the same epoch the usual PyTorch way
# (torchvision transforms in a DataLoader with workers, the teacher under
# no_grad in eval mode, the student's MoCo v2 + DisCo step, SGD).  Also the
# kdpipe pipeline with the teacher from its cache (teacher-extract
# --from-cache, written by a --save-cache pass over the same stream).
# Wall times are whole runs (process start-up, reading the dataset and the
# models, writing the student), measured here for both sides, and so is the
# CPU time of each run: on a shared machine compare images per CPU second
# of the one-thread-per-process variants (bench/results-distill.md).
#
#   KD_BENCH_LIMIT   images (default 60000, the whole training set)
#   KD_BENCH_BATCH   images per step (128, pipelines/ssl-distill-fmnist.mk's)
#   KD_BENCH_QUEUE   MoCo queue (4096)
#   KD_BENCH_THREADS threads in total (2).  kdpipe: teacher-extract --threads
#                    KD_BENCH_TEACHER_THREADS (THREADS/2) and distill-step
#                    THREADS minus those, one pipeline stage per core (augment,
#                    --threads 1, is idle most of the time); from the cache
#                    distill-step gets KD_BENCH_CACHE_THREADS (THREADS).
#                    PyTorch: KD_BENCH_WORKERS DataLoader workers (1) and
#                    THREADS minus those in the main process: the peer
#   KD_BENCH_SPLITS  more PyTorch splits "WORKERS:THREADS ..." (default "1:2")
#   KD_BENCH_KDSPLITS more kdpipe splits "TEACHER:STUDENT" (default "2:2", what
#                    the programs do by default: every program all the cores)
#   KD_BENCH_CACHE=0 leaves out the cache variants
# BLIS_ARCH_TYPE=haswell runs both sides on AVX2: kdpipe's BLIS kernels,
# PyTorch's BLIS (Debian's torch calls libblas, which is BLIS) and its oneDNN
# and ATen kernels (DNNL_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2).
# kdpipe's own loops stay compiled for -march=native.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/bin
W=${1:-${TMPDIR:-/tmp}/kd-bench-distill}
N=${KD_BENCH_LIMIT:-60000}
BATCH=${KD_BENCH_BATCH:-128}
QUEUE=${KD_BENCH_QUEUE:-4096}
TH=${KD_BENCH_THREADS:-2}
KT=${KD_BENCH_TEACHER_THREADS:-$((TH / 2 > 0 ? TH / 2 : 1))}
KS=$((TH - KT > 0 ? TH - KT : 1))
KC=${KD_BENCH_CACHE_THREADS:-$TH}
WK=${KD_BENCH_WORKERS:-1}
TT=$((TH - WK > 0 ? TH - WK : 1))
SPLITS=${KD_BENCH_SPLITS-1:2}
KDSPLITS=${KD_BENCH_KDSPLITS-2:2}
PY=/usr/bin/python3
[ -x "$B/distill-step" ] || { echo "bench/distill.sh: build first: make" >&2; exit 1; }
mkdir -p "$W"
now() { date +%s.%N; }
[ -s "$W/fm.h5" ] || "$B/dataset" /usr/share/datasets/fashion-mnist --split train -o "$W/fm.h5" >/dev/null
[ -s "$W/t.h5" ] || "$B/model-init" --arch resnet8x4 --in-channels 1 --head mlp:2048:128 -o "$W/t.h5" >/dev/null
[ -s "$W/s0.h5" ] || "$B/model-init" --arch resnet20 --in-channels 1 --head mlp:2048:128 -o "$W/s0.h5" >/dev/null

# The BLIS kernels kdpipe selects, passed to PyTorch's BLIS by number (BLIS
# 0.9 reads BLIS_ARCH_TYPE as its arch_t; left alone it runs generic here).
blis=$("$B/distill-step" --version | sed -n 's/^BLIS kernels: //p')
blis_id=$($PY -c "
import ctypes, sys
l = ctypes.CDLL('libblis.so.4'); l.bli_arch_string.restype = ctypes.c_char_p
i = 0
while l.bli_arch_string(i) is not None and l.bli_arch_string(i).decode() != sys.argv[1]: i += 1
print(i)" "$blis")
if [ "$blis" = haswell ]; then
    export DNNL_MAX_CPU_ISA=${DNNL_MAX_CPU_ISA:-AVX2} ATEN_CPU_CAPABILITY=${ATEN_CPU_CAPABILITY:-avx2}
fi
avx512=no
grep -qw avx512f /proc/cpuinfo && avx512=yes
echo "# CPU: $(lscpu | sed -n 's/^Model name: *//p') (family $(lscpu | sed -n 's/^CPU family: *//p') model $(lscpu | sed -n 's/^Model: *//p')), $(nproc) cores, avx512f: $avx512; kdpipe BLIS kernels: $blis (BLIS_ARCH_TYPE=$blis_id for PyTorch's BLIS)${DNNL_MAX_CPU_ISA:+, DNNL_MAX_CPU_ISA=$DNNL_MAX_CPU_ISA ATEN_CPU_CAPABILITY=$ATEN_CPU_CAPABILITY}"
echo "# $N images x 2 views, batch $BATCH, queue $QUEUE, resnet8x4 teacher -> resnet20 student, heads 2048 -> 128; $(date -u '+%F %H:%M') UTC"
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

A="--policy mocov2 --views 2 --batch $BATCH --seed 7 --epochs 1 --limit $N --threads 1 --quiet $W/fm.h5"
L="--loss moco:1,disco:32 --queue $QUEUE -m $W/s0.h5 --quiet"
res=$W/results.$$
trap 'rm -f "$res" "$W/times.a" "$W/times.b"' EXIT
: > "$res"
# timed NAME FUNCTION ARGS...: wall time and CPU time (user + sys of every
# process the variant ran: the shell's `times` for its children, which for
# PyTorch includes the DataLoader workers it waited for).  CPU seconds per
# image are the number to compare when other work shares the machine.
timed() {
    name=$1
    shift
    times > "$W/times.a"
    t0=$(now)
    "$@"
    t=$(echo "$(now) - $t0" | bc)
    times > "$W/times.b"
    cpu=$(awk -v f="$W/times.a" 'FNR == 2 { for (i = 1; i <= 2; i++) { split($i, a, "m");
        s += (FILENAME == f ? -1 : 1) * (a[1] * 60 + a[2]) } } END { printf "%.1f", s }' "$W/times.a" "$W/times.b")
    echo "$name|$t|$cpu" >> "$res"
    printf '%-44s %8.1f s %7.1f img/s  CPU %8.1f s %6.1f img/CPU-s\n' "$name" "$t" "$(echo "$N / $t" | bc -l)" \
        "$cpu" "$(echo "$N / $cpu" | bc -l)"
}
kd_live() { # TEACHER_THREADS STUDENT_THREADS OUT
    "$B/augment" $A | "$B/teacher-extract" -m "$W/t.h5" --threads "$1" --quiet \
        | "$B/distill-step" $L --threads "$2" -o "$3" >/dev/null
}
kd_save() { # THREADS: the teacher alone, writing the cache
    "$B/augment" $A | "$B/teacher-extract" -m "$W/t.h5" --threads "$1" --save-cache "$W/cache.h5" --quiet >/dev/null
}
kd_cache() { # STUDENT_THREADS
    "$B/augment" $A | "$B/teacher-extract" --from-cache "$W/cache.h5" --quiet \
        | "$B/distill-step" $L --threads "$1" -o "$W/st-cache.h5" >/dev/null
}
peer() { # WORKERS THREADS
    BLIS_ARCH_TYPE=$blis_id $PY "$ROOT/bench/distill_peer.py" "$W/fm.h5" "$N" "$BATCH" "$1" "$2" "$QUEUE" \
        "$W/peer.pt" > "$W/peer.json"
    echo "# PyTorch $1 worker(s) + $2 thread(s): $(cat "$W/peer.json")"
}

timed "kdpipe live teacher (threads $KT+$KS)" kd_live "$KT" "$KS" "$W/st-live.h5"
for s in $KDSPLITS; do
    [ "$s" = "$KT:$KS" ] && continue
    timed "kdpipe live teacher (threads ${s%%:*}+${s##*:})" kd_live "${s%%:*}" "${s##*:}" "$W/st-split.h5"
done
# the cache: one teacher pass over the same stream (not in the ratios), then
# the student fed from it
if [ "${KD_BENCH_CACHE:-1}" != 0 ]; then
    timed "(teacher alone writing the cache, threads $TH)" kd_save "$TH"
    echo "# cache: $(du -m "$W/cache.h5" | cut -f1) MB"
    timed "kdpipe teacher from the cache (threads $KC)" kd_cache "$KC"
    if h5diff -q "$W/st-live.h5" "$W/st-cache.h5" >/dev/null 2>&1; then same=yes; else same=no; fi
    echo "# students from the live teacher and from the cache identical (h5diff): $same"
fi
timed "PyTorch workers=$WK threads=$TT (the peer)" peer "$WK" "$TT"
for s in $SPLITS; do
    [ "$s" = "$WK:$TT" ] && continue
    timed "PyTorch workers=${s%%:*} threads=${s##*:}" peer "${s%%:*}" "${s##*:}"
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# ratios of images/s (wall) and of images per CPU second, kdpipe over the
# peer and over the best PyTorch split
$PY - "$res" <<'EOF'
import sys
rows = [l.split("|") for l in open(sys.argv[1]).read().splitlines()]
t = {k: (float(w), float(c)) for k, w, c in rows}
ref = next(v for k, v in t.items() if k.endswith("(the peer)"))
best = [min(v[i] for k, v in t.items() if k.startswith("PyTorch")) for i in (0, 1)]
for k, (w, c) in t.items():
    if k.startswith("kdpipe"):
        print("ratio %-44s wall %5.2fx the peer, %5.2fx the best PyTorch split; CPU %5.2fx, %5.2fx"
              % (k, ref[0] / w, best[0] / w, ref[1] / c, best[1] / c))
EOF
