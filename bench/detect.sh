#!/bin/sh
# detect images/s against the same backbone's inference alone (the method of
# bench/inference.sh: eval-only plan, 1 channel, 2 threads), batch 32 of
# 48x48 scenes at output stride 4: bench/detect.c times the two alternately
# in one process.  Then the detect program itself on a scenes file (its
# own images_per_second: reading, forward, decoding, masks, writing).
# flop_bound: the ratio the head's multiply-adds allow, backbone / (backbone
# + head): detect at that ratio is as fast as the backbone's inference allows.
# resnet20+s1: with the masks' skip head on stage 1 (detect-train --seg-skip 1).
# KD_BENCH_SECS sets the timing window per model (default 4 s).
cd "$(dirname "$0")/.." || exit 1
secs=${KD_BENCH_SECS:-4}
threads=${KD_BENCH_THREADS:-2}
size=${KD_BENCH_SIZE:-48}
bin=/tmp/kd_bench_detect.$$
tmp=/tmp/kd_bench_detect_d.$$
cc -std=c11 -D_GNU_SOURCE -fopenmp -O2 -march=${KD_BENCH_MARCH:-native} -Ilib $(pkg-config --cflags hdf5-serial) bench/detect.c lib/libkd.a \
    $(make -s --no-print-directory print-ldlibs) -o "$bin" || exit 1
mkdir -p "$tmp" || exit 1
py=/usr/bin/python3
printf '%-10s %9s %12s %12s %7s %11s %11s\n' model stage backbone_img/s detect_img/s ratio head_share flop_bound
for run in resnet20:0 resnet20:1 resnet8x4:0 wrn_16_2:0; do
    "$bin" "${run%:*}" "$threads" 32 "$size" "$secs" 4 "${run#*:}" > "$tmp/o" || exit 1
    $py -c 'import json,sys; a=json.load(open(sys.argv[1]))
print("%-10s %9s %12.1f %12.1f %6.2fx %10.0f%% %10.2fx" % (a["arch"], "%d+%dup%s" % (a["stage"], a["upsamplings"],
      "+s%d" % a["skip"] if a["skip"] else ""),
      a["backbone_images_per_s"], a["detect_images_per_s"], a["ratio"],
      100 * a["head_mmac"] / (a["backbone_mmac"] + a["head_mmac"]), a["flop_bound"]))' "$tmp/o"
done
# the program end to end: 512 scenes, an untrained resnet20 detector
bin/dataset /usr/share/datasets/fashion-mnist --split test --limit 2000 --scenes 512 --canvas "${size}x${size}" \
    --scale 0.6,1.2 --quiet -o "$tmp/s.h5" > /dev/null &&
bin/model-init -a resnet20 --in-channels 1 -o "$tmp/m.h5" > /dev/null &&
bin/detect-train -m "$tmp/m.h5" --train "$tmp/s.h5" --steps 1 --batch 2 --threads "$threads" --quiet \
    -o "$tmp/d.h5" > /dev/null &&
echo "detect program, resnet20, 512 ${size}x${size} scenes: $(bin/detect -m "$tmp/d.h5" "$tmp/s.h5" --threads "$threads" \
    --quiet -o "$tmp/dets.h5" | sed 's/.*"images_per_second": \([0-9.]*\).*/\1/') img/s" || exit 1
rm -rf "$bin" "$tmp"
