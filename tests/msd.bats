#!/usr/bin/env bats
# The msd loss (multi-scale decoupled contrastive distillation, our design)
# in the real pipeline: augment | teacher-extract --cam | aggregate |
# distill-step --loss ce:1,msd:1, and the frames it refuses.
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

B="$BATS_TEST_DIRNAME/../bin"
DS="$B/distill-step"
PY=/usr/bin/python3

setup_file() {
    cd "$BATS_FILE_TMPDIR"
    "$B/dataset" --limit 256 /usr/share/datasets/fashion-mnist -o d.h5 --quiet >/dev/null
    "$B/model-init" --arch resnet20 --in-channels 1 --num-classes 10 --seed 7 -o teacher.h5 >/dev/null
    "$B/model-init" --arch resnet20 --in-channels 1 --num-classes 10 --seed 3 -o s0.h5 >/dev/null
    # 16 images of 28x28 a batch: the student's last map is 64 x 7 x 7
    "$B/augment" --policy crop-flip --views 1 --batch 16 --epochs 1 --seed 5 --quiet d.h5 > a.kdt
}

setup() { cd "$BATS_FILE_TMPDIR"; rm -f out.h5 out.h5.ckpt.h5; }

# A stage adding t.msd0 [B,R,K] and t.msdw0 [B,R] as aggregate would, with
# R and K and a NaN at frame 1 row 2 chosen by the caller (R 0: none).
teacher_side() { # R K NAN
    "$PY" -c "
import sys
sys.path.insert(0, '$BATS_TEST_DIRNAME/../examples')
import numpy as np, kdt
R, K, nan = map(int, sys.argv[1:])
rng = np.random.default_rng(1)
for i, (meta, t) in enumerate(kdt.read_frames(sys.stdin.buffer)):
    n = t['view0'].shape[0]
    if R:
        z = rng.standard_normal((n, R, K)).astype(np.float32)
        if nan and i == 1:
            z[2, 3, 4] = np.nan
        t['t.msd0'], t['t.msdw0'] = z, np.ones((n, R), np.float32)
    kdt.write_frame(sys.stdout.buffer, meta, t)" "$@" < a.kdt
}

refused() { # the run failed with exit 1 and wrote nothing
    assert_failure 1
    [ ! -e out.h5 ] && [ ! -e out.h5.ckpt.h5 ]
}

@test "msd: augment | teacher-extract --cam | aggregate | distill-step --loss ce:1,msd:1" {
    "$B/teacher-extract" -m teacher.h5 --cam --quiet < a.kdt | "$B/aggregate" --in t.cam0 --scales 1,2,4 --quiet > t.kdt
    run sh -c "'$DS' --loss ce:1,msd:1 -m s0.h5 -o out.h5 < t.kdt > log.json"
    assert_success
    [ -f out.h5 ]
    [ "$(grep -c '"loss_msd"' log.json)" -eq 16 ]
    # the loss trains the student's classifier (no parameter of its own)
    "$PY" -c "
import h5py, numpy as np
a, b = h5py.File('s0.h5'), h5py.File('out.h5')
assert not np.array_equal(a['fc.weight'][()], b['fc.weight'][()])
assert 'train' not in b and 'train/msd/own_params' not in h5py.File('out.h5.ckpt.h5')"
}

@test "msd: msd-space feat trains a 1x1 conv + BN aligner of its own, never in the deployed model" {
    # a student 256 wide against the teacher's 64: 4 batches suffice
    "$B/model-init" --arch resnet8x4 --in-channels 1 --num-classes 10 --seed 3 -o wide.h5 >/dev/null
    "$B/augment" --policy crop-flip --views 1 --batch 16 --epochs 1 --limit 64 --seed 5 --quiet d.h5 \
        | "$B/teacher-extract" -m teacher.h5 --maps last --quiet | "$B/aggregate" --in t.map0 --scales 1,2,4 --quiet > tm.kdt
    run sh -c "'$DS' --loss ce:1,msd:1 --msd-space feat -m wide.h5 -o out.h5 < tm.kdt > log.json"
    assert_success
    [ "$(grep -c '"loss_msd"' log.json)" -eq 4 ]
    "$PY" -c "
import h5py
c, d = h5py.File('out.h5.ckpt.h5'), h5py.File('out.h5')
assert c['train/msd/own_params'].shape == (256 * 64 + 64 + 64,), c['train/msd/own_params'].shape
assert 'train' not in d and not any('aligner' in k for k in d.keys())"
}

@test "msd: --help and the man page list msd and its options" {
    run "$DS" --help
    assert_success
    assert_output --partial "  msd "
    assert_output --partial "--msd-tau X"
    assert_output --partial "--msd-scales S"
    assert_output --partial "--msd-stride N"
    assert_output --partial "--msd-space S"
    for w in '.B msd' 'msd\-tau' 'msd\-scales' 'msd\-stride' 'msd\-space' 'our interpretation' 'without published code'; do
        grep -qF -- "$w" "$BATS_TEST_DIRNAME/../man/man1/distill-step.1" || { echo "man page lacks $w"; false; }
    done
}

@test "msd: bad options are usage errors or clear errors" {
    teacher_side 21 10 0 > ok.kdt
    run sh -c "'$DS' --loss msd --msd-tau 0 -m s0.h5 -o out.h5 < ok.kdt"
    assert_failure 2
    assert_line --index 0 "distill-step: --msd-tau: loss msd: msd-tau: 0 is outside [0.0001, 100]"
    run sh -c "'$DS' --loss msd --msd-space pixels -m s0.h5 -o out.h5 < ok.kdt"
    refused
    assert_output "distill-step: -: loss msd: msd-space: 'pixels' is not logits or feat"
    run sh -c "'$DS' --loss msd --msd-scales 1,x -m s0.h5 -o out.h5 < ok.kdt"
    refused
    assert_output "distill-step: -: loss msd: msd-scales: '1,x' is not a list of 1 to 8 grid sizes such as 1,2,4"
    run sh -c "'$DS' --loss msd --msd-scales 1,2,8 -m s0.h5 -o out.h5 < ok.kdt"
    refused
    assert_output "distill-step: -: loss msd: regions: scale 8 does not fit a 7x7 map (1 to 7)"
}

@test "msd: a frame without t.msd0 is refused, nothing written" {
    teacher_side 0 10 0 > no.kdt
    run sh -c "'$DS' --loss ce:1,msd:1 -m s0.h5 -o out.h5 < no.kdt"
    refused
    assert_output "distill-step: -: frame 0: loss msd needs tensor t.msd0 (teacher-extract --cam | aggregate --in t.cam0)"
}

@test "msd: t.msd0 of other regions than the student's map gives is refused, nothing written" {
    teacher_side 5 10 0 > r5.kdt
    run sh -c "'$DS' --loss ce:1,msd:1 -m s0.h5 -o out.h5 < r5.kdt"
    refused
    assert_output "distill-step: -: loss msd: t.msd0 has 5 regions, the student's 7x7 map at msd-scales 1,2,4 gives 21 (aggregate --scales must match)"
}

@test "msd: t.msd0 of another class count than the student's is refused, nothing written" {
    teacher_side 21 12 0 > k12.kdt
    run sh -c "'$DS' --loss ce:1,msd:1 -m s0.h5 -o out.h5 < k12.kdt"
    refused
    assert_output "distill-step: -: loss msd: t.msd0 has 12 classes, the student's classifier 10"
}

@test "msd: a NaN in t.msd0 is refused where it enters, nothing written" {
    teacher_side 21 10 1 > nan.kdt
    run sh -c "'$DS' --loss ce:1,msd:1 -m s0.h5 -o out.h5 < nan.kdt 2>&1 >/dev/null"
    refused
    assert_output "distill-step: frame 1: loss msd: t.msd0 row 2 is not finite"
}

@test "msd: a student whose classifier is not linear on its features is refused" {
    "$B/model-init" --arch mobilenet_v3_large --in-channels 1 --num-classes 10 --seed 3 -o v3.h5 >/dev/null
    teacher_side 21 10 0 > ok.kdt
    run sh -c "'$DS' --loss msd -m v3.h5 -o out.h5 < ok.kdt"
    refused
    assert_output "distill-step: -: loss msd: model: mobilenet_v3_large's classifier is not one linear map of the pooled last stage"
}
