#!/usr/bin/env bats
# The ssa loss (SSA's dense term, our design) in the real pipeline:
# augment mocov2 | teacher-extract -m TEACHER --maps last |
# distill-step --loss moco:1,ssa:1, resume, and the frames it refuses.
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

B="$BATS_TEST_DIRNAME/../bin"
DS="$B/distill-step"
PY=/usr/bin/python3
MO="--queue 64 --shuffle-bn-group 4 --seed 7"

setup_file() {
    cd "$BATS_FILE_TMPDIR"
    "$B/dataset" --limit 256 /usr/share/datasets/fashion-mnist -o d.h5 --quiet >/dev/null
    "$B/model-init" --arch resnet20 --in-channels 1 --head mlp:64:32 --seed 7 -o teacher.h5 >/dev/null
    "$B/model-init" --arch resnet20 --in-channels 1 --head mlp:32:16 --seed 3 -o s0.h5 >/dev/null
    # 16 images of 28x28 a batch, 4 batches an epoch: the maps are 64 x 7 x 7 on both sides
    "$B/augment" --policy mocov2 --views 2 --batch 16 --epochs 2 --limit 64 --seed 5 --quiet d.h5 \
        | "$B/teacher-extract" -m teacher.h5 --maps last --quiet > t2.kdt
    "$B/augment" --policy mocov2 --views 2 --batch 16 --epochs 1 --limit 64 --seed 5 --quiet d.h5 \
        | "$B/teacher-extract" -m teacher.h5 --maps last --quiet > t1.kdt
}

setup() { cd "$BATS_FILE_TMPDIR"; rm -f out.h5 out.h5.ckpt.h5; }

# t1.kdt with t.map0 changed: MODE none (removed), short (one image less),
# nan (frame 1 image 2).
edit_map() { # MODE
    "$PY" -c "
import sys
sys.path.insert(0, '$BATS_TEST_DIRNAME/../examples')
import numpy as np, kdt
mode = sys.argv[1]
for i, (meta, t) in enumerate(kdt.read_frames(sys.stdin.buffer)):
    if mode == 'none':
        del t['t.map0']
    elif mode == 'short':
        t['t.map0'] = np.ascontiguousarray(t['t.map0'][1:])
    elif mode == 'nan' and i == 1:
        t['t.map0'][2, 5, 3, 4] = np.nan
    kdt.write_frame(sys.stdout.buffer, meta, t)" "$1" < t1.kdt
}

refused() { # the run failed with exit 1 and wrote nothing
    assert_failure 1
    [ ! -e out.h5 ] && [ ! -e out.h5.ckpt.h5 ]
}

@test "ssa: augment mocov2 | teacher-extract --maps last | distill-step --loss moco:1,ssa:1" {
    run sh -c "'$DS' --loss moco:1,ssa:1 $MO -m s0.h5 -o out.h5 < t1.kdt > log.json"
    assert_success
    [ -f out.h5 ]
    [ "$(grep -c '"loss_ssa"' log.json)" -eq 4 ]
    # the aligner 64 -> 64 (conv, BN weight and bias) is the loss's own:
    # in the checkpoint, never in the deployed model
    "$PY" -c "
import h5py, json, math
c, d = h5py.File('out.h5.ckpt.h5'), h5py.File('out.h5')
assert c['train/ssa/own_params'].shape == (64 * 64 + 64 + 64,), c['train/ssa/own_params'].shape
assert 'train' not in d and not any('aligner' in k for k in d.keys())
l = [json.loads(x)['loss_ssa'] for x in open('log.json') if 'loss_ssa' in x]
assert all(math.isfinite(v) and 0 < v < 10 for v in l), l"
}

@test "ssa: resume with a queue is bit-identical (model, aligner, queue)" {
    lo="--loss moco:1,ssa:1 --ssa-queue 24 --ssa-k 4 $MO"
    run sh -c "'$DS' $lo -m s0.h5 -o full.h5 < t2.kdt"
    assert_success
    run sh -c "'$DS' $lo -m s0.h5 --epochs 2 -o half.h5 < t1.kdt"
    assert_success
    run sh -c "'$DS' $lo --resume half.h5.ckpt.h5 -o res.h5 < t2.kdt"
    assert_success
    assert_output --partial '"steps": 8'
    run "$BATS_TEST_DIRNAME/../scripts/h5same" full.h5.ckpt.h5 res.h5.ckpt.h5 train/ssa/queue train/ssa/own_params
    assert_success
    assert_output "identical"
}

@test "ssa: --help and the man page list ssa and its options" {
    run "$DS" --help
    assert_success
    assert_output --partial "  ssa "
    for o in "--ssa-k N" "--ssa-gamma X" "--ssa-tau X" "--ssa-queue N" "--ssa-stage N"; do
        assert_output --partial "$o"
    done
    for w in '.B ssa' 'ssa\-k' 'ssa\-gamma' 'ssa\-tau' 'ssa\-queue' 'ssa\-stage' 'our interpretation' \
             'without published method text'; do
        grep -qF -- "$w" "$BATS_TEST_DIRNAME/../man/man1/distill-step.1" || { echo "man page lacks $w"; false; }
    done
}

@test "ssa: bad options are usage errors or clear errors" {
    run sh -c "'$DS' --loss moco:1,ssa:1 --ssa-tau 0 -m s0.h5 -o out.h5 < t1.kdt"
    assert_failure 2
    assert_line --index 0 "distill-step: --ssa-tau: loss ssa: ssa-tau: 0 is outside [0.0001, 100]"
    run sh -c "'$DS' --loss moco:1,ssa:1 --ssa-stage 4 -m s0.h5 -o out.h5 < t1.kdt"
    refused
    assert_output "distill-step: -: loss ssa: ssa-stage 4: the model has stages 1..3"
}

@test "ssa: a frame without t.map0 is refused, nothing written" {
    edit_map none > no.kdt
    run sh -c "'$DS' --loss moco:1,ssa:1 $MO -m s0.h5 -o out.h5 < no.kdt"
    refused
    assert_output "distill-step: -: frame 0: loss ssa needs tensor t.map0 (teacher-extract -m TEACHER --maps STAGE)"
}

@test "ssa: a t.map0 of another batch size is refused, nothing written" {
    edit_map short > short.kdt
    run sh -c "'$DS' --loss moco:1,ssa:1 $MO -m s0.h5 -o out.h5 < short.kdt 2>&1 >/dev/null"
    refused
    assert_output "distill-step: frame 0: loss ssa needs t.map0 as f32 of rank 4 with 16 rows, the frame has f32 of rank 4 with 15 rows"
}

@test "ssa: a NaN in t.map0 is refused where it enters, nothing written" {
    edit_map nan > nan.kdt
    run sh -c "'$DS' --loss moco:1,ssa:1 $MO -m s0.h5 -o out.h5 < nan.kdt 2>&1 >/dev/null"
    refused
    assert_output "distill-step: frame 1: loss ssa: t.map0 image 2 is not finite"
}
