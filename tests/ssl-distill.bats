#!/usr/bin/env bats
# The self-supervised distillation losses in the real pipeline:
# augment | teacher-extract | distill-step --loss moco:1,disco:32 / seed.
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

B="$BATS_TEST_DIRNAME/../bin"
DS="$B/distill-step"
PY=/usr/bin/python3
JF="$BATS_TEST_DIRNAME/../scripts/jsonfield"

setup_file() {
    cd "$BATS_FILE_TMPDIR"
    "$B/dataset" --limit 160 /usr/share/datasets/fashion-mnist -o d.h5 --quiet >/dev/null
    # a teacher with a head, a student resnet20 with a head as wide, and a
    # teacher of another width
    "$B/model-init" --arch resnet20 --in-channels 1 --head mlp:64:32 --seed 7 -o teacher.h5 >/dev/null
    "$B/model-init" --arch resnet20 --in-channels 1 --head mlp:64:32 --seed 3 -o s0.h5 >/dev/null
    "$B/model-init" --arch resnet20 --in-channels 1 --head mlp:64:16 --seed 7 -o teacher16.h5 >/dev/null
}

setup() { cd "$BATS_FILE_TMPDIR"; rm -f out.h5; }

views2() { # EPOCHS: two mocov2 views with the teacher's t.emb0, t.emb1
    "$B/augment" --policy mocov2 --views 2 --batch 16 --epochs "$1" --seed 5 --quiet d.h5 \
        | "$B/teacher-extract" -m teacher.h5 --no-feat --quiet
}

mean_of() { # FIELD, lines on stdin: the field's mean
    "$JF" "$1" | "$PY" -c "import sys; v=[float(x) for x in sys.stdin]; print(sum(v)/len(v))"
}

falls() { # FIELD LOG: the mean of the last 8 logged values < 0.8 x the first 8
    local a b
    a=$(grep "\"$1\"" "$2" | head -8 | mean_of "$1")
    b=$(grep "\"$1\"" "$2" | tail -8 | mean_of "$1")
    "$PY" -c "import sys; a,b=map(float,sys.argv[1:]); print('$1', a, '->', b); sys.exit(0 if b < 0.8*a else 1)" "$a" "$b"
}

@test "ssl-distill: augment | teacher-extract | distill-step --loss moco:1,disco:32 lowers the DisCo term" {
    views2 16 > s.kdt   # 10 batches x 16 epochs = 160 steps
    run sh -c "'$DS' --loss moco:1,disco:32 --queue 256 --lr 0.03 --schedule const -m s0.h5 -o out.h5 < s.kdt > log.json"
    assert_success
    [ -f out.h5 ]
    grep -q '"loss_moco"' log.json
    [ "$(grep -c '"loss_disco"' log.json)" -eq 160 ]
    falls loss_disco log.json
}

@test "ssl-distill: augment | teacher-extract | distill-step --loss seed lowers SEED's loss and checkpoints its queue" {
    # A random teacher maps every image near one direction (cosines ~0.99),
    # which leaves SEED nothing to learn at tau_T = 1e-4; a Python stage
    # centres its embeddings per batch, a stand-in for a trained teacher's spread.
    "$B/augment" --policy mocov2 --views 1 --batch 16 --epochs 20 --seed 5 --quiet d.h5 \
        | "$B/teacher-extract" -m teacher.h5 --no-feat --quiet | "$PY" -c "
import sys
sys.path.insert(0, '$BATS_TEST_DIRNAME/../examples')
import numpy as np, kdt
with kdt.Writer(sys.stdout.buffer) as w:
    for meta, t in kdt.read_frames(sys.stdin.buffer):
        e = t['t.emb0'] - t['t.emb0'].mean(0, keepdims=True)
        t['t.emb0'] = (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)
        w.write(meta, t)" > s1.kdt   # 200 steps
    run sh -c "'$DS' --loss seed --seed-queue 128 --tau-s 0.2 --tau-t 1e-4 --lr 0.1 --schedule const -m s0.h5 -o out.h5 < s1.kdt > log.json"
    assert_success
    [ -f out.h5 ]
    [ "$(grep -c '"loss_seed"' log.json)" -eq 200 ]
    falls loss_seed log.json
    "$PY" -c "
import h5py
q = h5py.File('out.h5.ckpt.h5')['train/seed/queue']
assert 'train' not in h5py.File('out.h5')
assert q.shape == (128, 32) and q.attrs['ptr'] == (200 * 16) % 128, (q.shape, q.attrs['ptr'])"
}

@test "ssl-distill: --help lists disco and seed with seed's options, each in the man page" {
    run "$DS" --help
    assert_success
    assert_output --partial "  disco "
    assert_output --partial "--seed-queue N"
    assert_output --partial "--tau-s X"
    assert_output --partial "--tau-t X"
    for o in '\fB\-\-seed\-queue\fR' '\fB\-\-tau\-s\fR' '\fB\-\-tau\-t\fR'; do
        grep -qF "$o" "$BATS_TEST_DIRNAME/../man/man1/distill-step.1" || { echo "man page lacks $o"; false; }
    done
    grep -q '^\.B disco$' "$BATS_TEST_DIRNAME/../man/man1/distill-step.1"
    grep -q '^\.B seed$' "$BATS_TEST_DIRNAME/../man/man1/distill-step.1"
    # seed's options do not collide with moco's generic --queue/--tau
    run "$DS" --loss seed --queue 16 -m s0.h5 -o out.h5 < /dev/null
    assert_failure 2
    assert_output --partial "--queue: none of the selected losses takes it (it is an option of: moco)"
}

@test "ssl-distill: bad input — no t.emb1, another teacher width, NaN teacher: exit 1, no model written" {
    "$B/augment" --policy mocov2 --views 2 --batch 16 --epochs 1 --seed 5 --quiet d.h5 > v.kdt
    "$B/teacher-extract" -m teacher.h5 --views view0 --quiet < v.kdt > only0.kdt
    run sh -c "'$DS' --loss moco:1,disco:32 --queue 64 -m s0.h5 -o out.h5 < only0.kdt"
    assert_failure 1
    assert_output "distill-step: frame 0: loss disco needs tensor t.emb1 (teacher-extract -m TEACHER)"
    [ ! -e out.h5 ]

    "$B/teacher-extract" -m teacher16.h5 --quiet < v.kdt > w16.kdt
    run sh -c "'$DS' --loss moco:1,disco:32 --queue 64 -m s0.h5 -o out.h5 < w16.kdt"
    assert_failure 1
    assert_output "distill-step: -: loss disco: the teacher's embeddings (t.emb0) are 16 wide, the student's head gives 32 (model-init --head mlp:H:16)"
    [ ! -e out.h5 ]
    run sh -c "'$DS' --loss seed --seed-queue 64 -m s0.h5 -o out.h5 < w16.kdt"
    assert_failure 1
    assert_output "distill-step: -: loss seed: the teacher's embeddings (t.emb0) are 16 wide, the student's head gives 32 (model-init --head mlp:H:16)"
    [ ! -e out.h5 ]

    "$B/teacher-extract" -m teacher.h5 --quiet < v.kdt | "$PY" -c "
import sys
sys.path.insert(0, '$BATS_TEST_DIRNAME/../examples')
import numpy as np, kdt
with kdt.Writer(sys.stdout.buffer) as w:
    for meta, t in kdt.read_frames(sys.stdin.buffer):
        if meta.get('step') == '2':
            t['t.emb1'][3, 5] = np.nan
        w.write(meta, t)" > nan.kdt
    run sh -c "'$DS' --loss moco:1,disco:32 --queue 64 -m s0.h5 -o out.h5 < nan.kdt > /dev/null"
    assert_failure 1
    assert_output "distill-step: frame 2: loss disco: t.emb1 row 3 is not finite"
    [ ! -e out.h5 ]
}
