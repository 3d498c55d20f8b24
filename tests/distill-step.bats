#!/usr/bin/env bats
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

B="$BATS_TEST_DIRNAME/../bin"
DS="$B/distill-step"
PY=/usr/bin/python3

setup() {
    cd "$BATS_TEST_TMPDIR"
    "$B/dataset" --limit 64 --split test /usr/share/datasets/fashion-mnist -o d.h5 >/dev/null
    "$B/model-init" --arch resnet20 --in-channels 1 --num-classes 10 --seed 3 -o sup.h5 >/dev/null
}

stream() { # EPOCHS [augment options]
    local e=$1; shift
    "$B/augment" --policy crop-flip --views 1 --batch 16 --epochs "$e" --seed 5 --quiet "$@" d.h5
}

same_weights() { # A.h5 B.h5: every parameter and buffer bit-identical
    "$PY" -c "
import h5py, numpy as np, sys
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
names = [k for k in a.keys() if k != 'train']
assert names and sorted(names) == sorted(k for k in b.keys() if k != 'train')
bad = [k for k in names if not np.array_equal(a[k][()], b[k][()])]
print('identical' if not bad else 'differ: %s' % bad[:3])" "$1" "$2"
}

@test "distill-step --help, --version, usage errors" {
    run "$DS" --help
    assert_success
    assert_output --partial "Usage: augment ... | distill-step"
    run "$DS" --version
    assert_success
    run "$DS" -m sup.h5 -o out.h5
    assert_failure 2
    assert_output --partial "--method or --loss is required"
    run "$DS" --method ce -o out.h5
    assert_failure 2
    run "$DS" --method nope -m sup.h5 -o out.h5
    assert_failure 2
    run "$DS" --loss nope:1 -m sup.h5 -o out.h5
    assert_failure 2
    assert_output --partial "unknown loss 'nope' (known: ce moco disco seed kd dkd crd msd ssa)"
    run "$DS" --method ce --schedule linear -m sup.h5 -o out.h5
    assert_failure 2
}

@test "distill-step ce: the loss falls on real images and the model file is usable" {
    stream 6 > s.kdt
    run sh -c "'$DS' --method ce -m sup.h5 --lr 0.05 --schedule const --val d.h5 --val-every 10 -o out.h5 < s.kdt"
    assert_success
    assert_output --partial '"val_top1"'
    # validated as initialised (step 0), every 10 steps, and after the last step
    echo "$output" | "$PY" -c "
import json, sys
lines = [json.loads(l) for l in sys.stdin]
val = [l['step'] for l in lines if 'val_top1' in l]
steps = [l['steps'] for l in lines if 'steps' in l][0]
print(val, steps)
assert val[0] == 0 and val[-1] == steps and all(v % 10 == 0 for v in val[:-1]) and len(val) == 4, (val, steps)
"
    first=$(echo "$output" | head -4 | "$BATS_TEST_DIRNAME/../scripts/jsonfield" loss | "$PY" -c "import sys; v=[float(x) for x in sys.stdin]; print(sum(v)/len(v))")
    last=$(echo "$output" | grep '"loss"' | tail -4 | "$BATS_TEST_DIRNAME/../scripts/jsonfield" loss | "$PY" -c "import sys; v=[float(x) for x in sys.stdin]; print(sum(v)/len(v))")
    "$PY" -c "import sys; a,b=map(float,sys.argv[1:]); print(a,b); sys.exit(0 if b < 0.8*a else 1)" "$first" "$last"
    run "$B/teacher-extract" -m out.h5 --features d.h5 -o f.h5
    assert_success
    run "$B/linprobe" --score f.h5 f.h5
    assert_success
}

@test "distill-step --lars: layer-wise trust ratios train, and step differently from plain SGD" {
    stream 6 > s.kdt
    run sh -c "'$DS' --method ce -m sup.h5 --lars 0.02 --lr 1 --wd 5e-4 --wd-exclude-bn-bias --schedule const -o lars.h5 < s.kdt"
    assert_success
    first=$(echo "$output" | grep '"loss"' | head -4 | "$BATS_TEST_DIRNAME/../scripts/jsonfield" loss | "$PY" -c "import sys; v=[float(x) for x in sys.stdin]; print(sum(v)/len(v))")
    last=$(echo "$output" | grep '"loss"' | tail -4 | "$BATS_TEST_DIRNAME/../scripts/jsonfield" loss | "$PY" -c "import sys; v=[float(x) for x in sys.stdin]; print(sum(v)/len(v))")
    "$PY" -c "import sys; a,b=map(float,sys.argv[1:]); print(a,b); sys.exit(0 if b < 0.8*a else 1)" "$first" "$last"
    "$DS" --method ce -m sup.h5 --lr 1 --wd 5e-4 --wd-exclude-bn-bias --schedule const -o sgd.h5 < s.kdt > /dev/null
    run same_weights lars.h5 sgd.h5
    assert_success
    assert_output --regexp '^differ: ' 
    run "$DS" --method ce -m sup.h5 --lars 0 -o x.h5
    assert_failure 2
    assert_output --partial "--lars"
}

@test "distill-step: resume gives weights bit-identical to an uninterrupted run" {
    stream 2 > full.kdt
    stream 1 > half.kdt
    "$DS" --method ce -m sup.h5 --lr 0.05 --epochs 2 -o a.h5 < full.kdt > /dev/null
    "$DS" --method ce -m sup.h5 --lr 0.05 --epochs 2 --ckpt-every 4 --ckpt half.ckpt.h5 -o b1.h5 < half.kdt > /dev/null
    run "$DS" --method ce --resume half.ckpt.h5 --lr 0.05 --epochs 2 -o b.h5 < full.kdt
    assert_success
    assert_output --partial '"steps": 8'
    run same_weights a.h5 b.h5
    assert_success
    assert_output "identical"
    # and the half run alone is not the same
    run same_weights a.h5 b1.h5
    assert_success
    assert_output --regexp '^differ: ' 
}

@test "distill-step: --threads 1 and 2 give bit-identical weights" {
    stream 2 > s.kdt
    "$DS" --method ce -m sup.h5 --lr 0.05 --epochs 2 --threads 1 -o t1.h5 < s.kdt > /dev/null
    "$DS" --method ce -m sup.h5 --lr 0.05 --epochs 2 --threads 2 -o t2.h5 < s.kdt > /dev/null
    run same_weights t1.h5 t2.h5
    assert_success
    assert_output "identical"
}

@test "distill-step moco: a short run with queue, momentum encoder and shuffle-BN" {
    "$B/model-init" --arch resnet20 --in-channels 1 --head mlp:64:32 --seed 3 -o m.h5 >/dev/null
    run sh -c "'$B/augment' --policy mocov2 --views 2 --batch 16 --epochs 2 --quiet d.h5 | '$DS' --method moco -m m.h5 --queue 64 --shuffle-bn-group 8 --epochs 2 --val d.h5 --knn-bank d.h5 --val-every 8 -o moco.h5"
    assert_success
    assert_output --partial '"loss_moco"'
    assert_output --partial '"val_knn_top1"'
    run "$B/tensor-info" moco.h5.ckpt.h5
    assert_output --partial "train/moco/queue"
    run "$B/tensor-info" moco.h5
    refute_output --partial "train/"
    assert_output --partial "head.0.weight"
    # no head: refused
    run sh -c "'$B/augment' --views 2 --batch 16 --quiet d.h5 | '$DS' --method moco -m sup.h5 --epochs 1 -o x.h5"
    assert_failure 1
    assert_output --partial "no projection head"
    [ ! -e x.h5 ]
}

@test "distill-step: bad input — truncated, empty, wrong channels, NaN loss" {
    stream 1 > s.kdt
    head -c 30000 s.kdt > cut.kdt
    run sh -c "'$DS' --method ce -m sup.h5 --epochs 1 -o out.h5 < cut.kdt"
    assert_failure 1
    assert_output --partial "at byte"
    [ ! -e out.h5 ]
    run sh -c "'$DS' --method ce -m sup.h5 --epochs 1 -o out.h5 < /dev/null"
    assert_failure 1
    assert_output "distill-step: <stdin>: the stream ended without its end marker (the writer died?) after 0 frames"
    "$PY" -c "import sys; sys.path.insert(0, '$BATS_TEST_DIRNAME/../examples'); import kdt; kdt.write_end(sys.stdout.buffer, 0)" > empty.kdt
    run sh -c "'$DS' --method ce -m sup.h5 --epochs 1 -o out.h5 < empty.kdt"
    assert_failure 1
    assert_output --partial "the stream is empty"
    stream 1 --channels 3 > rgb.kdt
    run sh -c "'$DS' --method ce -m sup.h5 --epochs 1 -o out.h5 < rgb.kdt"
    assert_failure 1
    assert_output --partial "view0 has 3 channels but the model takes 1"
    stream 10 > big.kdt
    run sh -c "'$DS' --method ce -m sup.h5 --lr 1000 --schedule const --ckpt-every 1 -o out.h5 < big.kdt"
    assert_failure 1
    assert_output --regexp "step [0-9]+: (loss is not finite|the gradient or BN statistics are not finite|the parameters are not finite after the step)"
    [ ! -e out.h5 ]
    run "$B/tensor-info" out.h5.ckpt.h5
    assert_success
    # the checkpoint left behind holds only finite values
    run "$PY" -c "
import h5py, numpy as np
f = h5py.File('out.h5.ckpt.h5')
names = []
f.visit(lambda n: names.append(n) if isinstance(f[n], h5py.Dataset) else None)
bad = [n for n in names if f[n].dtype.kind == 'f' and not np.isfinite(f[n][()]).all()]
print('finite' if not bad else 'not finite: %s' % bad[:3])"
    assert_success
    assert_output "finite"
}

@test "distill-step: SIGKILL while checkpointing every step never leaves a corrupt checkpoint" {
    stream 20 > long.kdt
    # wait for the first checkpoint (a loaded machine may take seconds to get
    # there), then, at different moments of the following ones, wait for the
    # next checkpoint's temporary file (.c.h5.tmp.PID, renamed to c.h5 when
    # complete) and kill while the process is alive and writing it.  A kill
    # that lands after the rename is retried: a landed kill leaves the
    # temporary file behind, since only the process renames it.
    for delay in 0 0.15 0.4; do
        landed=0
        for try in 1 2 3 4 5; do
            rm -f c.h5 .c.h5.tmp.*
            "$DS" --method ce -m sup.h5 --epochs 20 --ckpt-every 1 --ckpt c.h5 -o out.h5 < long.kdt > /dev/null 2>&1 &
            pid=$!
            tmp=".c.h5.tmp.$pid"
            for i in $(seq 600); do
                [ -e c.h5 ] && break
                sleep 0.1
            done
            [ -e c.h5 ]
            sleep $delay
            seen=0 i=0
            while [ $i -lt 2000000 ]; do
                if [ -e "$tmp" ]; then seen=1; break; fi
                i=$((i + 1))
            done
            [ "$seen" = 1 ]
            kill -0 $pid       # alive, right before the kill
            kill -9 $pid
            wait $pid 2>/dev/null || true
            # the previous checkpoint is intact
            run "$B/tensor-info" c.h5
            assert_success
            assert_output --partial "kdpipe model file"
            if [ -e "$tmp" ]; then landed=1; break; fi
        done
        echo "delay $delay: kill landed during a checkpoint write on try $try"
        [ "$landed" = 1 ]
    done
}

@test "distill-step: two losses compose; the same loss twice with half weights is bit-identical to once" {
    stream 1 > s.kdt
    run sh -c "'$DS' --loss ce:0.5,ce:0.5 -m sup.h5 --lr 0.05 --epochs 1 -o half.h5 < s.kdt"
    assert_success
    assert_output --partial '"loss_ce.2"'
    run sh -c "'$DS' --loss ce:1 -m sup.h5 --lr 0.05 --epochs 1 -o one.h5 < s.kdt"
    assert_success
    run same_weights half.h5 one.h5
    assert_success
    assert_output "identical"
    # ce and moco on one model (classifier and head), weights summed
    "$B/model-init" --arch resnet20 --in-channels 1 --num-classes 10 --head mlp:64:32 --seed 3 -o both.h5 >/dev/null
    "$B/augment" --policy mocov2 --views 2 --batch 16 --epochs 1 --seed 5 --quiet d.h5 > m.kdt
    run sh -c "'$DS' --loss ce:1,moco:0.5 --queue 32 --shuffle-bn-group 8 -m both.h5 --epochs 1 --log log.jsonl -o ce-moco.h5 < m.kdt"
    assert_success
    run "$PY" -c "
import json
rows = [json.loads(l) for l in open('log.jsonl') if '\"loss_moco\"' in l]
assert len(rows) == 4, rows
for r in rows:
    assert abs(r['loss'] - (r['loss_ce'] + 0.5 * r['loss_moco'])) < 1e-5 * abs(r['loss']), r
print('sum ok')"
    assert_success
    assert_output "sum ok"
    run sh -c "'$DS' --loss ce:1 -m both.h5 --epochs 1 -o ce-only.h5 < m.kdt"
    assert_success
    run same_weights ce-moco.h5 ce-only.h5
    assert_success
    assert_output --partial "differ"
}

@test "distill-step: loss options are checked against the selected losses" {
    stream 1 > s.kdt
    run "$DS" --method ce --tau 0.1 -m sup.h5 -o x.h5
    assert_failure 2
    assert_line --index 0 "distill-step: --tau: none of the selected losses takes it (it is an option of: moco)"
    run "$DS" --method moco --loss-opt moco.queue=0 -m sup.h5 -o x.h5
    assert_failure 2
    assert_line --index 0 "distill-step: --loss-opt: loss moco: queue: 0 is outside [1, 16777216]"
    run "$DS" --method moco --loss-opt moco.nope=1 -m sup.h5 -o x.h5
    assert_failure 2
    assert_line --index 0 "distill-step: --loss-opt: loss moco has no option 'nope' (it has: queue tau moco-m shuffle-bn-group)"
    run "$DS" --method ce --loss-opt moco.queue=8 -m sup.h5 -o x.h5
    assert_failure 2
    assert_line --index 0 "distill-step: --loss-opt: no loss 'moco' is selected"
    run "$DS" --method ce --loss-opt ce -m sup.h5 -o x.h5
    assert_failure 2
    assert_line --index 0 "distill-step: --loss-opt: 'ce' is not LOSS.OPTION=VALUE"
    run "$DS" --method ce:1 -m sup.h5 -o x.h5
    assert_failure 2
    assert_line --index 0 "distill-step: --method: one loss name, without weight ('ce:1'; several: --loss)"
}

@test "distill-step: --method takes every registered loss, and --help lists each loss's options as the man page does" {
    run "$DS" --help
    assert_success
    help="$output"
    names=$(echo "$help" | sed -n '/^The losses and their options:/,/^Optimiser/p' | awk '/^  [a-z]/ {print $1}')
    [ "$(echo $names)" = "ce moco disco seed kd dkd crd msd ssa" ]
    for n in $names; do
        grep -q "^\.B $n\$" "$BATS_TEST_DIRNAME/../man/man1/distill-step.1"
        run "$DS" --method "$n" -m sup.h5 -o x.h5 < /dev/null
        assert_failure 1
        assert_output --partial "the stream ended without its end marker"
    done
    opts=$(echo "$help" | sed -n '/^The losses and their options:/,/^Optimiser/p' | awk '/^    --/ {print $1}')
    [ -n "$opts" ]
    for o in $opts; do
        esc=$(echo "$o" | sed 's/-/\\\\-/g')
        grep -q "\\\\fB$esc\\\\fR" "$BATS_TEST_DIRNAME/../man/man1/distill-step.1" || { echo "man page lacks $o"; false; }
    done
}

@test "distill-step: a frame without what a loss needs, a stream without its length, a resume with other losses" {
    "$B/model-init" --arch resnet20 --in-channels 1 --head mlp:64:32 --seed 3 -o ssl.h5 >/dev/null
    stream 1 > s.kdt
    run sh -c "'$DS' --method moco -m ssl.h5 --epochs 1 -o x.h5 < s.kdt"
    assert_failure 1
    assert_output "distill-step: frame 0: loss moco needs tensor view1 (augment --views 2)"
    [ ! -e x.h5 ]
    # a stage of one's own that writes no metadata
    "$PY" -c "
import sys; sys.path.insert(0, '$BATS_TEST_DIRNAME/../examples')
import kdt
with kdt.Writer(sys.stdout.buffer) as w:
    for meta, t in kdt.read_frames(open('s.kdt', 'rb')):
        w.write({}, t)" > bare.kdt
    run sh -c "'$DS' --method ce -m sup.h5 -o x.h5 < bare.kdt"
    assert_failure 2
    assert_output --partial "--schedule cosine needs the run's length, and the stream does not say it"
    assert_output --partial "give --epochs E or --total-steps N"
    run sh -c "'$DS' --method ce -m sup.h5 --schedule const -o x.h5 < bare.kdt"
    assert_success
    run sh -c "'$DS' --method ce -m sup.h5 --total-steps 4 -o x.h5 < bare.kdt"
    assert_success
    run sh -c "'$DS' --method ce -m sup.h5 --epochs 1 --ckpt-every 2 -o c.h5 < s.kdt"
    assert_success
    run sh -c "'$DS' --loss ce:2 --resume c.h5.ckpt.h5 --epochs 1 -o r.h5 < s.kdt"
    assert_failure 1
    assert_output "distill-step: c.h5.ckpt.h5: the checkpoint was trained with --loss ce:1, not ce:2"
}

@test "distill-step moco: resume is bit-identical (model, queue, key encoder), and refuses another seed" {
    "$B/model-init" --arch resnet20 --in-channels 1 --head mlp:32:16 --seed 3 -o ssl.h5 >/dev/null
    "$B/augment" --policy mocov2 --views 2 --batch 8 --epochs 2 --seed 5 --quiet d.h5 > m2.kdt
    "$B/augment" --policy mocov2 --views 2 --batch 8 --epochs 1 --seed 5 --quiet d.h5 > m1.kdt
    mo="--method moco --queue 16 --shuffle-bn-group 4 --seed 7"
    run sh -c "'$DS' $mo -m ssl.h5 -o full.h5 < m2.kdt"
    assert_success
    run sh -c "'$DS' $mo -m ssl.h5 --epochs 2 -o half.h5 < m1.kdt"
    assert_success
    run sh -c "'$DS' $mo --resume half.h5.ckpt.h5 -o res.h5 < m2.kdt"
    assert_success
    assert_output --partial '"steps": 16'
    # every dataset and attribute (the queue's ptr among them)
    run "$BATS_TEST_DIRNAME/../scripts/h5same" full.h5.ckpt.h5 res.h5.ckpt.h5 train/moco/queue train/moco/key_params
    assert_success
    assert_output "identical"
    run sh -c "'$DS' --method moco --queue 16 --shuffle-bn-group 4 --resume half.h5.ckpt.h5 -o x.h5 < m2.kdt"
    assert_failure 1
    assert_output "distill-step: half.h5.ckpt.h5: the checkpoint was trained with --seed 7, not 0"
}

@test "distill-step: option errors name the flag; usage errors come before the stream is read" {
    run "$DS" --method moco --tau x -m sup.h5 -o x.h5
    assert_failure 2
    assert_line --index 0 "distill-step: --tau: loss moco: tau: 'x' is not a number"
    run sh -c "'$DS' --method moco --val d.h5 -m sup.h5 -o x.h5 < /dev/null"
    assert_failure 2
    assert_line --index 0 "distill-step: --val with loss moco needs --knn-bank TRAIN.h5 for its kNN monitor"
    stream 1 > s.kdt
    run sh -c "'$DS' --method ce --loss-opt ce.wd=0.1 -m sup.h5 --epochs 1 -o x.h5 < s.kdt"
    assert_failure 2
    assert_line --index 0 "distill-step: --loss-opt ce.wd: loss ce owns no parameters"
    "$PY" -c "
import sys; sys.path.insert(0, '$BATS_TEST_DIRNAME/../examples')
import kdt
with kdt.Writer(sys.stdout.buffer) as w:
    for meta, t in kdt.read_frames(open('s.kdt', 'rb')):
        w.write({}, t)" > bare.kdt
    run sh -c "'$DS' --method ce -m sup.h5 --epochs 2 -o x.h5 < bare.kdt"
    assert_failure 2
    assert_line --index 0 "distill-step: --epochs needs the stream's 'batches' metadata (batches per epoch, which augment writes) to make steps of epochs: give --total-steps N"
    [ ! -e x.h5 ]
}

@test "distill-step: resuming a finished run's checkpoint writes the output (nothing left to train)" {
    stream 1 > s.kdt
    run sh -c "'$DS' --method ce -m sup.h5 -o a.h5 < s.kdt"
    assert_success
    run sh -c "'$DS' --method ce --resume a.h5.ckpt.h5 -o b.h5 < s.kdt"
    assert_success
    assert_output --partial '"steps": 4'
    run same_weights a.h5 b.h5
    assert_success
    assert_output "identical"
}

@test "distill-step --val: a label the classifier cannot output is refused before training" {
    "$PY" -c "
import h5py, shutil
shutil.copy('d.h5', 'v.h5'); h = h5py.File('v.h5', 'a'); h['labels'][3] = 255; del h.attrs['classes']"
    stream 1 > s.kdt
    run sh -c "'$DS' --method ce -m sup.h5 --val v.h5 -o out.h5 < s.kdt"
    assert_failure 1
    assert_output "distill-step: v.h5: row 3: label 255 is out of range [0, 10)"
    [ ! -e out.h5 ]
}

@test "distill-step: a label tensor that is not [batch] is refused" {
    # moco reads no labels itself: the trainer's own check must catch it
    "$B/augment" --policy mocov2 --views 2 --batch 16 --quiet d.h5 > s.kdt
    "$PY" -c "
import sys; sys.path.insert(0, '$BATS_TEST_DIRNAME/../examples')
import kdt
meta, t = next(kdt.read_frames(open('s.kdt', 'rb')))
t['label'] = t['label'][:16].reshape(4, 4)
kdt.write_frame(sys.stdout.buffer, meta, t)" > sq.kdt
    "$B/model-init" --arch resnet20 --in-channels 1 --head mlp:64:32 --seed 3 -o m.h5 >/dev/null
    run sh -c "'$DS' --method moco -m m.h5 -o out.h5 < sq.kdt"
    assert_failure 1
    assert_output "distill-step: frame 0: label is not i32 [16]"
    [ ! -e out.h5 ]
}

@test "distill-step: a NaN pixel stops training before the step: exit 1, no output, the checkpoint kept" {
    stream 1 > s.kdt
    "$PY" -c "
import sys; sys.path.insert(0, '$BATS_TEST_DIRNAME/../examples')
import numpy as np, kdt
with kdt.Writer(sys.stdout.buffer) as w:
    for k, (meta, t) in enumerate(kdt.read_frames(open('s.kdt', 'rb'))):
        if k == 2:
            t['view0'][1, 0, 3, 3] = np.nan
        w.write(meta, t)" > nan.kdt
    run sh -c "'$DS' --method ce -m sup.h5 --ckpt-every 1 -o out.h5 < nan.kdt"
    assert_failure 1
    # ReLU keeps the NaN (as PyTorch does), so the loss already shows it
    assert_line --index 2 "distill-step: step 2: loss is not finite (nan); the last checkpoint is out.h5.ckpt.h5"
    [ ! -e out.h5 ]
    run "$PY" -c "
import h5py, numpy as np
f = h5py.File('out.h5.ckpt.h5')
assert f['train'].attrs['step'] == 2
bad = [k for k in f if isinstance(f[k], h5py.Dataset) and not np.isfinite(f[k][()]).all()]
print('finite' if not bad else 'not finite: %s' % bad[:3])"
    assert_success
    assert_output "finite"
}

@test "distill-step: a log reader that goes away does not stop training; a log that cannot be written fails the run" {
    stream 1 > s.kdt
    run bash -c "set -o pipefail; '$DS' --method ce -m sup.h5 -o out.h5 < s.kdt 2> err.txt | head -c 10 > /dev/null"
    assert_success
    [ -s out.h5 ]
    run cat err.txt
    assert_output "distill-step: the log's reader is gone; training goes on without the log"
    run sh -c "'$DS' --method ce -m sup.h5 --log /dev/full -o out2.h5 < s.kdt"
    assert_failure 1
    assert_output "distill-step: /dev/full: write error (No space left on device): the log is incomplete"
}

@test "distill-step: bad schedule metadata is a data error (exit 1) naming the frame, not a usage error" {
    stream 1 > s.kdt
    "$PY" -c "
import sys; sys.path.insert(0, '$BATS_TEST_DIRNAME/../examples')
import kdt
fr = list(kdt.read_frames(open('s.kdt', 'rb')))
for name, key, val in (('b0', 'batches', lambda i: '0'), ('neg', 'step', lambda i: str(-1 - i)), ('ep', 'epoch', lambda i: 'x')):
    with open(name + '.kdt', 'wb') as f:
        for i, (m, t) in enumerate(fr):
            m = dict(m); m[key] = val(i); kdt.write_frame(f, m, t)
        kdt.write_end(f, len(fr))"
    run "$DS" --method ce -m sup.h5 -o out.h5 --quiet b0.kdt
    assert_failure 1
    assert_output "distill-step: b0.kdt: frame 0: metadata batches='0' is not an integer >= 1"
    run "$DS" --method ce -m sup.h5 -o out.h5 --quiet neg.kdt
    assert_failure 1
    assert_output "distill-step: frame 0: metadata step='-1' is not an integer >= 0"
    run "$DS" --method ce -m sup.h5 -o out.h5 --quiet ep.kdt
    assert_failure 1
    assert_output "distill-step: frame 0: metadata epoch='x' is not an integer >= 0"
    [ ! -e out.h5 ]
}
