#!/usr/bin/env bats
# CRD in the real pipeline: dataset | augment | teacher-extract (t.feat0) |
# distill-step --loss ce:1,crd:0.8 --crd-data DATASET.h5.  Small images
# (16x16) and one thread keep it to seconds.
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

B="$BATS_TEST_DIRNAME/../bin"
DS="$B/distill-step"
PY=/usr/bin/python3
EX="$BATS_TEST_DIRNAME/../examples"
H5SAME="$BATS_TEST_DIRNAME/../scripts/h5same"
CRD="--loss ce:1,crd:0.8 --crd-data d.h5 --crd-k 64 --lr 0.05 --threads 1 --seed 11"

setup_file() {
    cd "$BATS_FILE_TMPDIR"
    "$B/dataset" --limit 256 /usr/share/datasets/fashion-mnist -o d.h5 --quiet >/dev/null
    "$B/dataset" --limit 256 --split test /usr/share/datasets/fashion-mnist -o other.h5 --quiet >/dev/null
    "$B/model-init" --arch resnet20 --in-channels 1 --num-classes 10 --seed 7 -o teacher.h5 >/dev/null
    "$B/model-init" --arch resnet20 --in-channels 1 --num-classes 10 --seed 3 -o s.h5 >/dev/null
    for e in 1 2; do
        "$B/augment" --policy crop-flip --views 1 --batch 32 --epochs $e --size 16x16 --seed 5 --quiet d.h5 \
            | "$B/teacher-extract" -m teacher.h5 --threads 1 --quiet > s$e.kdt
    done
}

setup() { cd "$BATS_FILE_TMPDIR"; rm -f out.h5 out.h5.ckpt.h5; }

edit() { # PYTHON-STATEMENTS on (i, meta, t) of every frame: s1.kdt -> stdout
    "$PY" -c "
import sys
sys.path.insert(0, '$EX')
import numpy as np, kdt
for i, (meta, t) in enumerate(kdt.read_frames(open('s1.kdt', 'rb'))):
    $1
    kdt.write_frame(sys.stdout.buffer, meta, t)"
}

@test "crd: ce:1,crd:0.8 trains; the heads are checkpointed, not deployed; the log has loss_crd" {
    run sh -c "'$DS' $CRD -m s.h5 -o out.h5 < s1.kdt > log.json"
    assert_success
    [ -f out.h5 ]
    [ "$(grep -c '"loss_crd"' log.json)" -eq 8 ]
    run "$PY" -c "
import h5py, json, numpy as np
lines = [json.loads(l) for l in open('log.json') if '\"loss_crd\"' in l]
for l in lines:  # the weights: L = CE + 0.8 L_crd
    assert abs(l['loss'] - (l['loss_ce'] + 0.8 * l['loss_crd'])) <= 1e-5 * l['loss'], l
    assert 0 < l['loss_crd'] < 1e3, l
o, s, c = h5py.File('out.h5'), h5py.File('s.h5'), h5py.File('out.h5.ckpt.h5')
assert sorted(o.keys()) == sorted(s.keys()), 'the deployed model has what model-init wrote, no CRD heads'
g = c['train/crd']
assert g['bank_s'].shape == (256, 128) and g['bank_t'].shape == (256, 128)
assert g['bank_s'].attrs['z_s'] > 0 and g['bank_s'].attrs['z_t'] > 0
# heads 128x64+128 (student, resnet20 pools 64) and 128x64+128 (teacher)
assert g['own_params'].shape == (2 * (128 * 64 + 128),), g['own_params'].shape
# the banks hold unit rows where the batches wrote them: every row, one epoch
n = np.linalg.norm(g['bank_s'][()], axis=1)
assert np.allclose(n, 1, atol=1e-5), n.min()
print('ok', lines[0]['loss_crd'], lines[-1]['loss_crd'])"
    assert_success
    assert_output --partial "ok "
}

@test "crd: resume is bit-identical to an uninterrupted run (model, heads, banks, Z)" {
    run sh -c "'$DS' $CRD -m s.h5 -o full.h5 < s2.kdt > /dev/null"
    assert_success
    # the first half of the run, stopped at its checkpoint
    run sh -c "'$DS' $CRD -m s.h5 --epochs 2 -o half.h5 < s1.kdt > /dev/null"
    assert_success
    run sh -c "'$DS' $CRD --resume half.h5.ckpt.h5 -o res.h5 < s2.kdt"
    assert_success
    assert_output --partial '"steps": 16'
    run "$H5SAME" full.h5.ckpt.h5 res.h5.ckpt.h5 train/crd/bank_s train/crd/bank_t train/crd/own_params
    assert_success
    assert_output "identical"
    run "$H5SAME" full.h5 res.h5 conv1.weight
    assert_success
    assert_output "identical"
    # Z was fixed on the first batch, and carried over by the checkpoint
    run "$PY" -c "
import h5py
h, f = (h5py.File(p)['train/crd/bank_s'].attrs for p in ('half.h5.ckpt.h5', 'full.h5.ckpt.h5'))
assert h['z_s'] > 0 and h['z_t'] > 0 and h['z_s'] == f['z_s'] and h['z_t'] == f['z_t']"
    assert_success
}

@test "crd: an index outside the dataset fails the run, exit 1, no output written" {
    edit "t['index'] = t['index'] + (256 if i == 2 else 0)" > bad.kdt
    run sh -c "'$DS' $CRD -m s.h5 -o out.h5 < bad.kdt > /dev/null"
    assert_failure 1
    assert_output "distill-step: frame 2: loss crd: index[0] = 362 is outside the 256 rows of d.h5"
    [ ! -e out.h5 ]
    # a stream of more rows than --crd-limit allows
    run sh -c "'$DS' $CRD --crd-limit 100 -m s.h5 -o out.h5 < s1.kdt > /dev/null"
    assert_failure 1
    assert_output "distill-step: frame 0: loss crd: index[1] = 105 is outside the 100 rows of d.h5 (--crd-limit)"
    [ ! -e out.h5 ]
}

@test "crd: frames without t.feat0, index or label are refused, naming what writes them" {
    run sh -c "'$B/augment' --policy crop-flip --views 1 --batch 32 --size 16x16 --quiet d.h5 | '$DS' $CRD -m s.h5 -o out.h5"
    assert_failure 1
    assert_output "distill-step: -: frame 0: loss crd needs tensor t.feat0 as f32 [B,D] (teacher-extract -m TEACHER)"
    edit "t.pop('t.feat0') if i == 1 else None" > late.kdt
    run sh -c "'$DS' $CRD -m s.h5 -o out.h5 < late.kdt > /dev/null"
    assert_failure 1
    assert_output "distill-step: frame 1: loss crd needs tensor t.feat0 (teacher-extract -m TEACHER)"
    edit "del t['index']" > noindex.kdt
    run sh -c "'$DS' $CRD -m s.h5 -o out.h5 < noindex.kdt > /dev/null"
    assert_failure 1
    assert_output "distill-step: frame 0: loss crd needs tensor index (augment)"
    edit "del t['label']" > nolabel.kdt
    run sh -c "'$DS' --loss crd:0.8 --crd-data d.h5 --crd-k 64 --threads 1 -m s.h5 -o out.h5 < nolabel.kdt > /dev/null"
    assert_failure 1
    assert_output "distill-step: frame 0: loss crd needs tensor label (augment, from a labelled dataset)"
    [ ! -e out.h5 ]
}

@test "crd: --crd-data missing or not the stream's, and K too large for N" {
    run sh -c "'$DS' --loss ce:1,crd:0.8 -m s.h5 -o out.h5 < s1.kdt"
    assert_failure 1
    assert_output "distill-step: -: loss crd: --crd-data DATASET.h5 is required (the dataset file the stream was made from: its size and labels)"
    run sh -c "'$DS' --loss ce:1,crd:0.8 --crd-data d.h5 -m s.h5 -o out.h5 < s1.kdt"
    assert_failure 1
    assert_output "distill-step: -: loss crd: --crd-k 16384: d.h5 has 256 rows, and a sample of class 0 has only 226 of other classes to draw from: give --crd-k below 226"
    run sh -c "'$DS' $CRD --crd-k 226 -m s.h5 -o out.h5 < s1.kdt"
    assert_failure 1
    assert_output --partial "a sample of class 0 has only 226 of other classes"
    run sh -c "'$DS' --loss ce:1,crd:0.8 --crd-data other.h5 --crd-k 64 --threads 1 -m s.h5 -o out.h5 < s1.kdt"
    assert_failure 1
    assert_output "distill-step: frame 0: loss crd: row 0 of the batch has label 1, row 98 of other.h5 has 4: the stream was not made from that file"
    run sh -c "'$DS' --loss ce:1,crd:0.8 --crd-data nope.h5 -m s.h5 -o out.h5 < s1.kdt"
    assert_failure 1
    assert_output --partial "distill-step: -: loss crd: nope.h5: "
    [ ! -e out.h5 ]
}

@test "crd: --help lists crd and its options (distill-step.bats checks each is in the man page)" {
    run "$DS" --help
    assert_success
    assert_output --partial "  crd "
    for o in crd-data crd-limit crd-k crd-tau crd-momentum crd-dim; do
        assert_output --partial "    --$o "
    done
    grep -q "^\.B crd$" "$BATS_TEST_DIRNAME/../man/man1/distill-step.1"
    grep -q "RepDistiller" "$BATS_TEST_DIRNAME/../man/man1/distill-step.1"
}
