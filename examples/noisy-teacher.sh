#!/bin/sh
# A user's stage in the middle of a distillation pipe: DisCo from a teacher
# whose embeddings pass through examples/teacher_noise.py on their way to
# the student.  Usage: examples/noisy-teacher.sh DATASET.h5 OUTDIR [SIGMA]
set -e
kd=$(dirname "$0")/../bin
ds=$1 out=$2 sigma=${3:-0.05}
mkdir -p "$out"
"$kd/model-init" --arch resnet20 --in-channels 1 --head mlp:128:32 --seed 1 -o "$out/teacher.h5" > /dev/null
"$kd/model-init" --arch resnet20 --in-channels 1 --head mlp:128:32 --seed 2 -o "$out/student0.h5" > /dev/null
"$kd/augment" --policy mocov2 --views 2 --batch 32 --epochs 1 --seed 7 --quiet "$ds" \
  | "$kd/teacher-extract" -m "$out/teacher.h5" --quiet \
  | "$(dirname "$0")/teacher_noise.py" "$sigma" \
  | "$kd/distill-step" --loss moco:1,disco:32 --queue 64 -m "$out/student0.h5" --lr 0.03 \
      --log "$out/train.log" -o "$out/student.h5"
tail -1 "$out/train.log"
