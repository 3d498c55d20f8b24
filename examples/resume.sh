#!/bin/sh
# Stop a run and resume it: distill-step checkpoints atomically, and fed the
# same stream (augment is deterministic in --seed) the resumed run ends with
# the same weights, bit for bit.  Usage: examples/resume.sh DATASET.h5 OUTDIR
set -e
kd=$(dirname "$0")/../bin
ds=$1 out=$2
mkdir -p "$out"
"$kd/model-init" --arch resnet20 --in-channels 1 --num-classes 10 -o "$out/init.h5" > /dev/null
stream() { "$kd/augment" --policy crop-flip --views 1 --batch 16 --epochs "$1" --seed 7 --quiet "$ds"; }
# the whole run, for reference
stream 2 | "$kd/distill-step" --method ce -m "$out/init.h5" --epochs 2 -o "$out/full.h5" > /dev/null
# a run that stops after the first epoch, with a checkpoint every 2 steps ...
stream 1 | "$kd/distill-step" --method ce -m "$out/init.h5" --epochs 2 --ckpt-every 2 --ckpt "$out/ckpt.h5" -o "$out/half.h5" > /dev/null
# ... resumed on the whole stream: frames before the checkpoint's step are skipped
stream 2 | "$kd/distill-step" --method ce --resume "$out/ckpt.h5" --epochs 2 -o "$out/resumed.h5" > /dev/null
/usr/bin/python3 - "$out/full.h5" "$out/resumed.h5" <<'PY'
import h5py, numpy as np, sys
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
same = all(np.array_equal(a[k][()], b[k][()]) for k in a if k != "train")
print("resumed run equals the uninterrupted one:", same)
PY
