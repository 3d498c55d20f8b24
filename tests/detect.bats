#!/usr/bin/env bats
# detect: a detector trained by detect-train on real scenes, decoded and
# scored by detect-eval (the round trip of issue 16), its three output
# forms, and bad inputs.  Decoding itself is checked against NumPy in
# tests/unit/test_centernet.c.
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

B="$BATS_TEST_DIRNAME/../bin"
FM=/usr/share/datasets/fashion-mnist

# Round trip, kept small to run in about a minute on a loaded 2-core
# machine (14 s of CPU): 200 training scenes of 32x32 with one object
# (scale 0.5-0.8, 14-22 pixels), a frozen random-init resnet20 at stride 4
# (its last stage), a head of 16 channels, 60 steps of 8 scenes; 50 test
# scenes from the test split.  That is far too short to detect well: the
# test proves the path works end to end and learns, not the method's
# accuracy.
setup_file() {
    cd "$BATS_FILE_TMPDIR"
    "$B/model-init" -a resnet20 --in-channels 1 -o r20.h5 > /dev/null
    "$B/dataset" "$FM" --split train --limit 2000 --scenes 200 --canvas 32x32 --objects 1,1 --scale 0.5,0.8 \
        -o tr.h5 > /dev/null
    "$B/dataset" "$FM" --split test --limit 500 --scenes 50 --canvas 32x32 --objects 1,1 --scale 0.5,0.8 \
        -o te.h5 > /dev/null
    "$B/detect-train" -m r20.h5 --train tr.h5 --steps 60 --batch 8 --head-channels 16 --lr 0.05 --warmup 5 \
        --freeze-backbone --log-every 0 --threads 2 -o det.h5 > train.json
}

setup() {
    cd "$BATS_FILE_TMPDIR"
}

@test "detect: help and usage errors" {
    run "$B/detect" --help
    assert_success
    for o in --format --masks --no-masks --topk --batch --limit --flip-test; do
        assert_output --partial "  $o "
    done
    run "$B/detect" te.h5 -o d.h5
    assert_failure 2
    assert_line --index 0 "detect: a detector is required (-m DETECTOR.h5)"
    run "$B/detect" -m det.h5 te.h5
    assert_failure 2
    assert_line --index 0 "detect: an output is required (-o DETS)"
    run "$B/detect" -m det.h5 -o d.h5
    assert_failure 2
    assert_line --index 0 "detect: an input dataset file is required"
    run "$B/detect" -m det.h5 -o d.h5 te.h5 tr.h5
    assert_failure 2
    assert_line --index 0 "detect: one input file, not 2"
    run "$B/detect" -m det.h5 -o d.h5 --format xml te.h5
    assert_failure 2
    assert_line --index 0 "detect: --format: h5, json or kdt, not 'xml'"
    run "$B/detect" -m det.h5 -o d.h5 --masks m.h5 te.h5
    assert_failure 2
    assert_line --index 0 "detect: --masks is for json or kdt output; HDF5 output holds its masks"
}

@test "detect: round trip through detect-eval, AP50 and mIoU above their floors" {
    run "$B/detect" -m det.h5 te.h5 -o d.h5 --threads 2
    assert_success
    assert_output --regexp '"images": 50, "detections": [0-9]+'
    run "$B/detect-eval" --gt te.h5 --dets d.h5 --seg d.h5
    assert_success
    echo "$output" > eval.json
    # Measured when this test was written: AP50 0.0169, mIoU 0.0746 (the
    # background right, objects not yet); an untrained head (--steps 1
    # --lr 0) scores AP50 0 and mIoU 0.002.  The floors sit between.
    /usr/bin/python3 -c "
import json
r = json.load(open('eval.json'))
assert r['AP50'] > 0.005, r
assert r['mIoU'] > 0.03, r"
}

@test "detect: JSON, tensor stream and HDF5 score the same; masks file; same detections whatever --threads" {
    "$B/detect" -m det.h5 te.h5 -o d.h5 --threads 2 > /dev/null
    "$B/detect" -m det.h5 te.h5 -o d.json --masks m.h5 --threads 1 > /dev/null
    "$B/detect" -m det.h5 te.h5 --format kdt -o - 2> /dev/null > d.kdt
    a=$("$B/detect-eval" --gt te.h5 --dets d.h5 --seg d.h5)
    b=$("$B/detect-eval" --gt te.h5 --dets d.json --seg m.h5)
    c=$("$B/detect-eval" --gt te.h5 --dets d.kdt --seg d.h5)
    [ "$a" = "$b" ]
    [ "$a" = "$c" ]
    /usr/bin/python3 -c "
import h5py, json, numpy as np
h = h5py.File('d.h5'); j = json.load(open('d.json'))
assert len(j) == len(h['scores']) and 0 < len(j) <= 50 * 100
b = np.array([d['bbox'] for d in j], np.float32)
assert np.array_equal(b, h['boxes'][:])  # --threads 1 and 2 alike
assert np.array_equal(h5py.File('m.h5')['masks'][:], h['masks'][:])
assert h['masks'].shape == (50, 32, 32) and h['masks'][:].max() <= 10
assert (h['boxes'][:, 2:] >= 0).all() and (h['boxes'][:, 0] + h['boxes'][:, 2] <= 32 + 1e-4).all()"
    run "$B/detect" -m det.h5 te.h5 -o d1.h5 --topk 1 --no-masks
    assert_success
    assert_output --regexp '"detections": 50,'
    /usr/bin/python3 -c "
import h5py; h = h5py.File('d1.h5'); assert 'masks' not in h and list(h['image_ids'][:]) == list(range(50))"
}

@test "detect: --flip-test merges each image with its mirror (mirrored scenes give mirrored results)" {
    # the merge averages an image's heatmap, sizes and mask logits with its
    # mirror image's flipped back, so scene and mirrored scene merge to the
    # mirror of each other: masks exactly, and per image the same scores and
    # classes (not boxes: the offsets stay each image's own, and boxes are
    # clipped to the image)
    /usr/bin/python3 -c "
import h5py, shutil
shutil.copy('te.h5', 'te-m.h5')
with h5py.File('te-m.h5', 'r+') as f:
    f['images'][...] = f['images'][()][:, :, ::-1]"
    # and a detector with the masks' skip (its logits merged at stride 1)
    "$B/detect-train" -m r20.h5 --train tr.h5 --steps 20 --batch 8 --head-channels 8 --lr 0.05 --seg-skip 1 \
        --freeze-backbone --log-every 0 --threads 2 -o flip-sk.h5
    for m in det flip-sk; do
    for f in te te-m; do
        "$B/detect" -m $m.h5 $f.h5 --topk 20 --quiet -o $f-plain.h5
        run "$B/detect" -m $m.h5 $f.h5 --topk 20 --flip-test --threads 2 -o $f-flip.h5
        assert_success
        assert_output --regexp '"images": 50, "detections": [0-9]+'
    done
    /usr/bin/python3 - <<'EOF'
import h5py, numpy as np
def load(p):
    f = h5py.File(p)
    return tuple(f[k][()] for k in ('masks', 'image_ids', 'scores', 'labels', 'boxes'))
a, b = load('te-flip.h5'), load('te-m-flip.h5')
assert np.array_equal(a[0][:, :, ::-1], b[0]), 'masks are not mirrors'
for i in range(50):
    ra = sorted(zip(a[2][a[1] == i], a[3][a[1] == i]))
    rb = sorted(zip(b[2][b[1] == i], b[3][b[1] == i]))
    assert len(ra) == len(rb) == 20 and np.allclose(np.array(ra), np.array(rb), rtol=1e-5, atol=1e-5), i
# without the merge the two are not mirrors: the test can tell
p, q = load('te-plain.h5'), load('te-m-plain.h5')
assert not np.array_equal(p[0][:, :, ::-1], q[0]) or not np.allclose(np.sort(p[2]), np.sort(q[2]))
assert not np.array_equal(a[0], p[0]) or not np.allclose(a[2], p[2])
EOF
    done
}

@test "detect: plain images (no boxes) are detected too" {
    "$B/dataset" "$FM" --split test --limit 10 -o plain.h5 > /dev/null
    run "$B/detect" -m det.h5 plain.h5 -o p.h5 --topk 5
    assert_success
    assert_output --regexp '"images": 10, "detections": 50,'
}

@test "detect: bad inputs, nothing written" {
    run "$B/detect" -m r20.h5 te.h5 -o x.h5
    assert_failure 1
    assert_output "detect: r20.h5: not a detector (no det_stage attribute; train one with detect-train)"
    head -c 30000 det.h5 > trunc.h5
    run "$B/detect" -m trunc.h5 te.h5 -o x.h5
    assert_failure 1
    assert_output --partial "detect: trunc.h5: "
    run "$B/detect" -m det.h5 trunc.h5 -o x.h5
    assert_failure 1
    assert_output --partial "detect: trunc.h5: "
    "$B/dataset" "$FM" --split test --limit 100 --scenes 4 --canvas 30x30 --scale 0.5,0.8 -o s30.h5 > /dev/null
    run "$B/detect" -m det.h5 s30.h5 -o x.h5
    assert_failure 1
    assert_output "detect: det.h5: 30x30 images: stage 3 is 8x8, not stride 4 after 0 upsamplings"
    # a skip stage the file cannot hold: out of range, the head's own, or
    # without its tensors
    for v in 7 3 1; do
        /usr/bin/python3 -c "
import h5py, shutil, sys
shutil.copy('det.h5', 'bad-skip.h5')
h5py.File('bad-skip.h5', 'r+').attrs['det_seg_skip'] = int(sys.argv[1])" $v
        run "$B/detect" -m bad-skip.h5 te.h5 -o x.h5
        assert_failure 1
        case $v in
        7) assert_output "detect: bad-skip.h5: attribute det_seg_skip = 7 is out of range [1, 3]" ;;
        3) assert_output "detect: bad-skip.h5: det_seg_skip is the head's own stage 3" ;;
        1) assert_output --partial "detect: bad-skip.h5: " && assert_output --partial "det/skip.0.weight" ;;
        esac
    done
    # a skip head of another width than its stage's map, and skip tensors
    # without the attribute naming their stage
    "$B/detect-train" -m r20.h5 --train tr.h5 --steps 1 --batch 2 --head-channels 8 --seg-skip 1 --freeze-backbone \
        --log-every 0 -o sk1.h5
    /usr/bin/python3 -c "
import h5py, shutil
shutil.copy('sk1.h5', 'bad-w.h5')
h5py.File('bad-w.h5', 'r+').attrs['det_seg_skip'] = 2
shutil.copy('sk1.h5', 'bad-a.h5')
del h5py.File('bad-a.h5', 'r+').attrs['det_seg_skip']"
    run "$B/detect" -m bad-w.h5 te.h5 -o x.h5
    assert_failure 1
    assert_output "detect: bad-w.h5: detector: det/skip.0.weight has 16 input channels, stage 2's map 32"
    run "$B/detect" -m bad-a.h5 te.h5 -o x.h5
    assert_failure 1
    assert_output "detect: bad-a.h5: a skip head (det/skip.*) without the det_seg_skip attribute naming its stage"
    run "$B/detect" -m det.h5 te.h5 -o x.h5 --flip-test=1
    assert_failure 2
    assert_line --index 0 "detect: option '--flip-test' doesn't allow an argument"
    run "$B/detect" -m det.h5 te.h5 -o /nonexistent/x.h5
    assert_failure 1
    [ ! -e x.h5 ]
}
