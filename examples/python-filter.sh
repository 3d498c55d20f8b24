#!/bin/sh
# Swap a stage for your own program: a Python filter between augment and
# distill-step.  Usage: examples/python-filter.sh DATASET.h5 OUTDIR
set -e
kd=$(dirname "$0")/../bin
ds=$1 out=$2
mkdir -p "$out"
"$kd/model-init" --arch resnet20 --in-channels 1 --num-classes 10 -o "$out/init.h5" > /dev/null
"$kd/augment" --policy crop-flip --views 1 --batch 32 --epochs 1 --quiet "$ds" \
  | "$(dirname "$0")/noise_filter.py" 0.2 \
  | "$kd/distill-step" --method ce -m "$out/init.h5" --lr 0.05 --epochs 1 --log "$out/train.log" -o "$out/noisy.h5"
tail -1 "$out/train.log"
