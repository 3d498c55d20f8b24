#!/usr/bin/env bats
# The supervised distillation losses in the real pipeline:
# augment | teacher-extract | distill-step --loss ce:0.1,kd:0.9 / ce:1,dkd:1.
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

B="$BATS_TEST_DIRNAME/../bin"
DS="$B/distill-step"
PY=/usr/bin/python3
JF="$BATS_TEST_DIRNAME/../scripts/jsonfield"
MAN="$BATS_TEST_DIRNAME/../man/man1/distill-step.1"

setup_file() {
    cd "$BATS_FILE_TMPDIR"
    "$B/dataset" --limit 32 /usr/share/datasets/fashion-mnist -o d.h5 --quiet >/dev/null
    # a 10-class teacher and student, and a teacher with 5 classes
    "$B/model-init" --arch resnet20 --in-channels 1 --num-classes 10 --seed 7 -o teacher.h5 >/dev/null
    "$B/model-init" --arch resnet20 --in-channels 1 --num-classes 10 --seed 3 -o s0.h5 >/dev/null
    "$B/model-init" --arch resnet20 --in-channels 1 --num-classes 5 --seed 7 -o teacher5.h5 >/dev/null
    # 2 batches of 16 a epoch, 2 epochs: 4 frames
    "$B/augment" --policy crop-flip --views 1 --batch 16 --epochs 2 --seed 5 --quiet d.h5 > v.kdt
    "$B/teacher-extract" -m teacher.h5 --no-feat --quiet < v.kdt > t.kdt
    # its first frame alone, for the checks of one step
    "$PY" -c "
import sys
sys.path.insert(0, '$BATS_TEST_DIRNAME/../examples')
import kdt
meta, t = next(kdt.read_frames(sys.stdin.buffer))
meta.update(batches='1', epochs='1')  # a whole stream of one frame, still epoch 0
kdt.write_frame(sys.stdout.buffer, meta, t)
kdt.write_end(sys.stdout.buffer, 1)" < t.kdt > t1.kdt
}

setup() { cd "$BATS_FILE_TMPDIR"; rm -f out.h5 out.h5.ckpt.h5; }

@test "sup-kd: --loss ce:0.1,kd:0.9 and ce:1,dkd:1 train, write the model and log their terms" {
    run sh -c "'$DS' --loss ce:0.1,kd:0.9 --lr 0.05 -m s0.h5 -o out.h5 < t.kdt > log.json"
    assert_success
    [ -f out.h5 ]
    [ "$(grep -c '"loss_kd"' log.json)" -eq 4 ]
    [ "$(grep -c '"loss_ce"' log.json)" -eq 4 ]
    # the logged total is 0.1 ce + 0.9 kd
    grep '"loss_kd"' log.json | "$PY" -c "
import json, sys
for l in map(json.loads, sys.stdin):
    assert l['loss_kd'] > 0 and abs(l['loss'] - 0.1 * l['loss_ce'] - 0.9 * l['loss_kd']) < 1e-5 * l['loss'], l"
    rm -f out.h5 out.h5.ckpt.h5
    run sh -c "'$DS' --loss ce:1,dkd:1 --lr 0.05 -m s0.h5 -o out.h5 < t.kdt > log.json"
    assert_success
    [ -f out.h5 ]
    [ "$(grep -c '"loss_dkd"' log.json)" -eq 4 ]
}

@test "sup-kd: dkd's warm-up follows the frame's epoch counted from 1, as mdistiller's" {
    # one step from the same weights on the same frame (epoch 0): only the
    # factor differs, 1/20 and 1/2 against 1 without warm-up (0 if epoch 0
    # were taken as mdistiller's 0)
    first() { "$JF" loss_dkd < "$1" | head -1; }
    "$DS" --loss ce:1,dkd:1 --dkd-warmup 1 -m s0.h5 -o out.h5 < t1.kdt > full.json
    "$DS" --loss ce:1,dkd:1 -m s0.h5 -o out.h5 < t1.kdt > w20.json
    "$DS" --loss ce:1,dkd:1 --loss-opt dkd.dkd-warmup=2 -m s0.h5 -o out.h5 < t1.kdt > w2.json
    "$PY" -c "
import sys
full, w20, w2 = map(float, sys.argv[1:])
print(full, w20, w2)
assert full > 0 and abs(w20 * 20 - full) < 1e-5 * full and abs(w2 * 2 - full) < 1e-5 * full" \
        "$(first full.json)" "$(first w20.json)" "$(first w2.json)"
    # --kd-t and --loss-opt kd.kd-t=V are one option
    "$DS" --loss ce:0.1,kd:0.9 --kd-t 2 -m s0.h5 -o out.h5 < t1.kdt > a.json
    "$DS" --loss ce:0.1,kd:0.9 --loss-opt kd.kd-t=2 -m s0.h5 -o out.h5 < t1.kdt > b.json
    "$DS" --loss ce:0.1,kd:0.9 -m s0.h5 -o out.h5 < t1.kdt > c.json
    a=$("$JF" loss_kd < a.json) b=$("$JF" loss_kd < b.json) c=$("$JF" loss_kd < c.json)
    echo "kd-t 2: $a $b, kd-t 4: $c"
    [ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" != "$c" ]
}

@test "sup-kd: usage errors — option ranges, options of unselected losses" {
    run "$DS" --loss ce:1,dkd:1 --dkd-warmup 0 -m s0.h5 -o out.h5
    assert_failure 2
    assert_output "distill-step: --dkd-warmup: loss dkd: dkd-warmup: 0 is outside [1, 1000000]
Try 'distill-step --help' for more information."
    run "$DS" --loss ce:1,dkd:1 --kd-t 2 -m s0.h5 -o out.h5
    assert_failure 2
    assert_output "distill-step: --kd-t: none of the selected losses takes it (it is an option of: kd)
Try 'distill-step --help' for more information."
    run "$DS" --loss ce:1,kd:1 --loss-opt kd.t=2 -m s0.h5 -o out.h5
    assert_failure 2
    assert_output "distill-step: --loss-opt: loss kd has no option 't' (it has: kd-t)
Try 'distill-step --help' for more information."
}

@test "sup-kd: bad input — no t.logits0, another class count, NaN teacher: exit 1, no model written" {
    run sh -c "'$DS' --loss ce:0.1,kd:0.9 -m s0.h5 -o out.h5 < v.kdt"
    assert_failure 1
    assert_output "distill-step: frame 0: loss kd needs tensor t.logits0 (teacher-extract -m TEACHER, a teacher with a classifier)"
    [ ! -e out.h5 ]

    "$B/teacher-extract" -m teacher5.h5 --no-feat --quiet < v.kdt > t5.kdt
    run sh -c "'$DS' --loss ce:0.1,kd:0.9 -m s0.h5 -o out.h5 < t5.kdt"
    assert_failure 1
    assert_output "distill-step: -: loss kd: the teacher's logits (t.logits0) have 5 classes, the student's classifier has 10"
    [ ! -e out.h5 ]
    run sh -c "'$DS' --loss ce:1,dkd:1 -m s0.h5 -o out.h5 < t5.kdt"
    assert_failure 1
    assert_output "distill-step: -: loss dkd: the teacher's logits (t.logits0) have 5 classes, the student's classifier has 10"
    [ ! -e out.h5 ]

    "$PY" -c "
import sys
sys.path.insert(0, '$BATS_TEST_DIRNAME/../examples')
import numpy as np, kdt
for meta, t in kdt.read_frames(sys.stdin.buffer):
    if meta.get('step') == '2':
        t['t.logits0'][3, 5] = np.nan
    kdt.write_frame(sys.stdout.buffer, meta, t)" < t.kdt > nan.kdt
    for l in kd dkd; do
        run sh -c "'$DS' --loss ce:1,$l:1 -m s0.h5 -o out.h5 < nan.kdt > /dev/null"
        assert_failure 1
        assert_output "distill-step: frame 2: loss $l: t.logits0 row 3 is not finite"
        [ ! -e out.h5 ]
    done
}

@test "sup-kd: --help lists kd and dkd with their options, each in the man page" {
    run "$DS" --help
    assert_success
    assert_output --partial "  kd "
    assert_output --partial "  dkd "
    for o in "--kd-t X" "--dkd-alpha X" "--dkd-beta X" "--dkd-t X" "--dkd-warmup N"; do
        assert_output --partial "$o"
    done
    for o in '\fB\-\-kd\-t\fR' '\fB\-\-dkd\-alpha\fR' '\fB\-\-dkd\-beta\fR' '\fB\-\-dkd\-t\fR' '\fB\-\-dkd\-warmup\fR'; do
        grep -qF "$o" "$MAN" || { echo "man page lacks $o"; false; }
    done
    grep -q '^\.B kd$' "$MAN"
    grep -q '^\.B dkd$' "$MAN"
}
