#!/bin/sh
# bench/kd-step.sh [WORKDIR] — the cost of a supervised distillation step
# against a plain CE step of the same student when the teacher comes from
# the cache (issue 14's target: at most 1.3x).  The stream (crop-flip views
# plus the wrn_40_2 teacher's logits, features and class-activation maps,
# and for MSD the region logits from aggregate) is written to a file once,
# so every run reads the same bytes and only distill-step differs.
#   ARCH=resnet8x4  N=1280 (20 frames of 64)  REPS=3 (the best of)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/bin
W=${1:-${TMPDIR:-/tmp}/kd-bench-kdstep}
ARCH=${ARCH:-resnet8x4}
N=${N:-1280}
REPS=${REPS:-3}
mkdir -p "$W"
now() { date +%s.%N; }
[ -s "$W/fm.h5" ] || "$B/dataset" /usr/share/datasets/fashion-mnist --split train --limit "$N" -o "$W/fm.h5" >/dev/null
[ -s "$W/t.h5" ] || "$B/model-init" --arch wrn_40_2 --in-channels 1 --num-classes 10 -o "$W/t.h5" >/dev/null
[ -s "$W/s.h5" ] || "$B/model-init" --arch "$ARCH" --in-channels 1 --num-classes 10 -o "$W/s.h5" >/dev/null
if [ ! -s "$W/s.kdt" ]; then
    "$B/augment" --policy crop-flip --views 1 --batch 64 --seed 3 --quiet "$W/fm.h5" |
        "$B/teacher-extract" -m "$W/t.h5" --cam --save-cache "$W/c.h5" --quiet |
        "$B/aggregate" --in t.cam0 --scales 1,2,4 --quiet > "$W/s.kdt"
fi
echo "# CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# student $ARCH, $N images in frames of 64, the best of $REPS runs of distill-step on the same stream file"
best() { # LOSS...: the best wall time of REPS runs
    b=""
    for r in $(seq "$REPS"); do
        t0=$(now)
        "$B/distill-step" "$@" -m "$W/s.h5" -o "$W/o.h5" --quiet < "$W/s.kdt" > /dev/null
        t=$(echo "$(now) - $t0" | bc)
        if [ -z "$b" ] || [ "$(echo "$t < $b" | bc)" = 1 ]; then b=$t; fi
    done
    echo "$b"
}
ce=$(best --loss ce)
printf '%-36s %8.2f s  %5.0f img/s  1.00x\n' "ce" "$ce" "$(echo "$N / $ce" | bc -l)"
for l in "ce:0.1,kd:0.9" "ce:1,dkd:1" "ce:0.1,kd:0.9,msd:1" "ce:1,crd:0.8 --crd-k 512 --crd-data $W/fm.h5"; do
    # shellcheck disable=SC2086
    t=$(best --loss $l)
    printf '%-36s %8.2f s  %5.0f img/s  %.2fx\n' "$(echo "$l" | cut -d' ' -f1)" "$t" "$(echo "$N / $t" | bc -l)" \
        "$(echo "$t / $ce" | bc -l)"
done
