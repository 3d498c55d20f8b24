#!/usr/bin/env bats
# Detection and segmentation scenes: dataset --scenes, their ground truth in
# detect-eval (boxes and --seg masks) and tensor-info --png.
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

B="$BATS_TEST_DIRNAME/../bin"
FM=/usr/share/datasets/fashion-mnist
FX="$BATS_TEST_DIRNAME/fixtures/coco/case_scenes"
PY=/usr/bin/python3

setup() {
    cd "$BATS_TEST_TMPDIR"
    "$B/dataset" "$FM" --split test --limit 2000 --scenes 200 --seed 3 -o s.h5 > s.json
}

# The ground truth of a scenes file as a detections file (score 1), and
# (with a second argument) the same as COCO JSON ground truth.
gt_as_dets() {
    "$PY" -c "
import h5py, json, numpy as np, sys
f = h5py.File('$1'); b = f['boxes'][:]; l = f['box_labels'][:]; o = f['box_offsets'][:]
img = np.repeat(np.arange(len(o) - 1), np.diff(o)).astype(np.int64)
h = h5py.File('$2', 'w'); h.attrs['kdpipe_format'] = 1; h.attrs['kdpipe_kind'] = 'detections'
h['boxes'] = b; h['scores'] = np.ones(len(b), np.float32); h['labels'] = l; h['image_ids'] = img
if len(sys.argv) > 1:
    json.dump({'images': [{'id': i} for i in range(len(o) - 1)],
               'categories': [{'id': k} for k in range(len(f.attrs['classes']))],
               'annotations': [{'id': q + 1, 'image_id': int(img[q]), 'category_id': int(l[q]), 'iscrowd': 0,
                                'bbox': [float(v) for v in b[q]], 'area': float(b[q][2] * b[q][3])}
                               for q in range(len(b))]}, open(sys.argv[1], 'w'))
" ${3:-}
}

# detect-eval ARGS... fails with exit 1 and exactly MESSAGE (the last argument).
de_fails() {
    run "$B/detect-eval" "${@:1:$#-1}"
    assert_failure 1
    assert_output "${@: -1}"
}

@test "scenes: help and usage errors" {
    run "$B/dataset" --help
    assert_success
    for o in --scenes --canvas --objects --scale --max-overlap --fg-threshold; do
        assert_output --partial "  $o "
    done
    run "$B/dataset" "$FM" --scenes 5 --objects 3,1 -o x.h5
    assert_failure 2
    assert_line --index 0 "dataset: --objects: MIN 3 is above MAX 1"
    run "$B/dataset" "$FM" --scenes 5 --objects 1 -o x.h5
    assert_failure 2
    assert_line --index 0 "dataset: --objects: '1' is not two values A,B"
    run "$B/dataset" "$FM" --scenes 5 --objects 0,65 -o x.h5
    assert_failure 2
    assert_line --index 0 "dataset: --objects: 65 is outside [0, 64]"
    run "$B/dataset" "$FM" --scenes 5 --scale 2,1 -o x.h5
    assert_failure 2
    assert_line --index 0 "dataset: --scale: LO 2 is above HI 1"
    run "$B/dataset" "$FM" --scenes 5 --max-overlap 1.5 -o x.h5
    assert_failure 2
    assert_line --index 0 "dataset: --max-overlap: 1.5 is outside [0, 1]"
    run "$B/dataset" "$FM" --scenes 0 -o x.h5
    assert_failure 2
    assert_line --index 0 "dataset: --scenes: 0 is outside [1, 1073741824]"
    run "$B/dataset" "$FM" --canvas 64x64 -o x.h5
    assert_failure 2
    assert_line --index 0 "dataset: --canvas, --objects, --scale, --max-overlap and --fg-threshold need --scenes N"
    # objects that cannot fit the canvas: nothing written
    run "$B/dataset" "$FM" --split test --limit 10 --scenes 5 --canvas 40x40 -o x.h5
    assert_failure 1
    assert_output "dataset: $FM: --scale 2 makes a 28x28 object 56x56, larger than the 40x40 canvas"
    [ ! -e x.h5 ]
    run "$B/detect-eval" --help
    assert_output --partial "--seg PRED"
    run "$B/detect-eval" --gt s.h5 --seg -
    assert_failure 2
    assert_line --index 0 "detect-eval: --seg: masks are read from named HDF5 files, not standard input"
    run "$B/tensor-info" --help
    assert_output --partial "boxes.png"
}

@test "scenes: the layout, tight boxes, masks, statistics, test-split objects, determinism" {
    run cat s.json
    assert_output --regexp '^\{"output": "s.h5", "n": 200, "h": 96, "w": 96, "c": 1, "classes": 10, "boxes": [0-9]+, "dropped": 0, "seconds": '
    "$PY" -c "
import h5py, numpy as np
f = h5py.File('s.h5')
assert f.attrs['kdpipe_kind'] == 'dataset' and f.attrs['kdpipe_format'] == 1
lay = {k: (str(f[k].dtype), f[k].shape) for k in f}
M = f['boxes'].shape[0]
assert lay == {'images': ('uint8', (200, 96, 96, 1)), 'masks': ('uint8', (200, 96, 96)), 'boxes': ('float32', (M, 4)),
               'box_labels': ('int32', (M,)), 'box_offsets': ('int64', (201,))}, lay
im, m, b, l, o = (f[k][:] for k in ('images', 'masks', 'boxes', 'box_labels', 'box_offsets'))
x = im / 255.0
assert abs(f.attrs['mean'][0] - x.mean()) < 1e-6 and abs(f.attrs['std'][0] - x.std()) < 1e-6
assert list(f.attrs['classes'][:2]) == ['T-shirt/top', 'Trouser'], f.attrs['classes']
assert 'objects=1,4' in f.attrs['scenes'] and 'seed=3' in f.attrs['scenes']
k = np.diff(o); assert o[0] == 0 and o[-1] == M and k.min() >= 1 and k.max() <= 4, k
assert (b == np.round(b)).all() and (b[:, :2] >= 0).all() and (b[:, 0] + b[:, 2] <= 96).all() and (b[:, 1] + b[:, 3] <= 96).all()
for i in range(200):
    for q in range(o[i], o[i + 1]):
        X, Y, W, H = b[q].astype(int)
        inside = np.zeros((96, 96), bool); inside[Y:Y + H, X:X + W] = True
        own = m[i] == l[q] + 1
        if q == o[i + 1] - 1:
            # the last object is on top: its mask pixels touch all four edges of its box
            mine = own & inside
            assert mine[Y].any() and mine[Y + H - 1].any() and mine[:, X].any() and mine[:, X + W - 1].any(), (i, q)
    # every mask pixel lies in a box of its class
    cover = np.zeros((96, 96), np.int32)
    for q in range(o[i], o[i + 1]):
        X, Y, W, H = b[q].astype(int)
        sel = np.zeros((96, 96), bool); sel[Y:Y + H, X:X + W] = True
        cover[sel & (m[i] == l[q] + 1)] = 1
    assert (cover == (m[i] > 0)).all(), i
    # foreground pixels of the image are exactly the mask (threshold 32)
    assert ((im[i, :, :, 0] >= 32) == (m[i] > 0)).all(), i
print('ok')"
    # scale 1, one object: the pasted square is a test image, its box the tight box of pixels >= 32
    "$B/dataset" "$FM" --split test --scenes 20 --objects 1,1 --scale 1,1 --seed 9 -o one.h5 > /dev/null
    run "$PY" -c "
import gzip, h5py, numpy as np
src = np.frombuffer(gzip.open('$FM/t10k-images-idx3-ubyte.gz').read()[16:], np.uint8).reshape(-1, 28, 28)
lab = np.frombuffer(gzip.open('$FM/t10k-labels-idx1-ubyte.gz').read()[8:], np.uint8)
fg = src >= 32
rows, cols = fg.any(2), fg.any(1)
y0 = rows.argmax(1); y1 = 27 - rows[:, ::-1].argmax(1); x0 = cols.argmax(1); x1 = 27 - cols[:, ::-1].argmax(1)
f = h5py.File('one.h5'); im = f['images'][:, :, :, 0]; b = f['boxes'][:].astype(int); l = f['box_labels'][:]
for i in range(20):
    X, Y, W, H = b[i]
    cand = np.nonzero((x1 - x0 + 1 == W) & (y1 - y0 + 1 == H) & (lab == l[i]))[0]
    hit = [j for j in cand if Y - y0[j] >= 0 and X - x0[j] >= 0 and Y - y0[j] + 28 <= 96 and X - x0[j] + 28 <= 96
           and (im[i, Y - y0[j]:Y - y0[j] + 28, X - x0[j]:X - x0[j] + 28] == src[j]).all()]
    assert hit, i
print('ok')"
    assert_output "ok"
    # the same seed gives the same file whatever --threads; another seed another file
    "$B/dataset" "$FM" --split test --limit 2000 --scenes 200 --seed 3 --threads 1 -o t1.h5 > /dev/null
    "$B/dataset" "$FM" --split test --limit 2000 --scenes 200 --seed 4 -o s4.h5 > /dev/null
    run "$PY" -c "
import h5py, numpy as np
a, b, c = h5py.File('s.h5'), h5py.File('t1.h5'), h5py.File('s4.h5')
print(all(np.array_equal(a[k][:], b[k][:]) for k in a), np.array_equal(a['images'][:], c['images'][:]))"
    assert_output "True False"
}

@test "scenes: round trip through tensor-info --png and detect-eval (AP 1, mIoU 1; JSON ground truth the same)" {
    run "$B/tensor-info" --png pngs --png-count 32 s.h5
    assert_success
    assert_output --partial "@scenes = split=test limit=2000 canvas=96x96 objects=1,4 scale=0.75,2 max_overlap=0.3 fg_threshold=32 seed=3"
    assert_output --partial "masks                    u8   [200,96,96]"
    for f in pngs/images.png pngs/boxes.png pngs/masks.png; do
        run "$PY" -c "import sys; b=open('$f','rb').read(26); print(b[:8]==b'\x89PNG\r\n\x1a\n', int.from_bytes(b[16:20],'big'), b[25])"
        assert_output --regexp "^True 15[0-9]{2} (0|2)$"
    done
    # boxes.png and masks.png are RGB (colour type 2)
    run "$PY" -c "print(open('pngs/masks.png','rb').read(26)[25], open('pngs/boxes.png','rb').read(26)[25])"
    assert_output "2 2"
    gt_as_dets s.h5 dt.h5 g.json
    run "$B/detect-eval" --gt s.h5 --dets dt.h5 --seg s.h5
    assert_success
    assert_output --regexp '^\{"AP": 1, "AP50": 1, "AP75": 1, .*"AR100": 1, .*"voc_ap50_all": 1, "mIoU": 1, "pixel_accuracy": 1, "classes_in_mean": 11, "iou": \[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1\]\}$'
    a=$("$B/detect-eval" --gt s.h5 --dets dt.h5)
    b=$("$B/detect-eval" --gt g.json --dets dt.h5)
    [ -n "$a" ] && [ "$a" = "$b" ]
}

@test "scenes: detect-eval --gt scenes.h5 equals pycocotools on perturbed detections (tests/gen/coco.py)" {
    "$B/dataset" "$FM" --split test --limit 500 --scenes 40 --objects 0,5 --seed 16 -o c.h5 > /dev/null
    "$PY" -c "
import h5py, json, numpy as np
g = json.load(open('$FX/gt.json')); d = json.load(open('$FX/dets.json')); f = h5py.File('c.h5')
b, l, o = f['boxes'][:], f['box_labels'][:], f['box_offsets'][:]
a = g['annotations']
assert len(a) == len(b) and len(g['images']) == len(o) - 1, 'the fixture is not this scenes file: run tests/gen/coco.py'
assert all([float(v) for v in b[q]] == a[q]['bbox'] and l[q] == a[q]['category_id'] and o[a[q]['image_id']] <= q < o[a[q]['image_id'] + 1] for q in range(len(a)))
h = h5py.File('dt.h5', 'w'); h.attrs['kdpipe_format'] = 1; h.attrs['kdpipe_kind'] = 'detections'
h['boxes'] = np.array([x['bbox'] for x in d], np.float32); h['scores'] = np.array([x['score'] for x in d], np.float32)
h['labels'] = np.array([x['category_id'] for x in d], np.int32); h['image_ids'] = np.array([x['image_id'] for x in d], np.int64)
assert (h['boxes'][:] == np.array([x['bbox'] for x in d])).all() and (h['scores'][:] == np.array([x['score'] for x in d])).all()"
    run "$B/detect-eval" --gt c.h5 --dets dt.h5
    assert_success
    echo "$output" > out.json
    run "$PY" -c "
import json; a = json.load(open('out.json')); b = json.load(open('$FX/expected.json'))
bad = [(k, a[k], b[k]) for k in b if abs(a[k] - b[k]) > 1e-6]
print('ok' if not bad and b['AP'] > 0.1 else bad)"
    assert_output "ok"
}

@test "scenes: detect-eval --seg against a NumPy reference on a perturbed prediction; absent classes out of the mean" {
    "$PY" -c "
import h5py, numpy as np
f = h5py.File('s.h5'); m = f['masks'][:]
rng = np.random.default_rng(1)
p = m.copy()
noise = rng.random(p.shape) < 0.05
p[noise] = rng.integers(0, 11, int(noise.sum()), dtype=np.uint8)
p[:, :, 1:] = np.where(rng.random(p[:, :, 1:].shape) < 0.1, p[:, :, :-1], p[:, :, 1:])   # edges shifted
p[p == 3] = 4                       # class 2 never predicted: IoU 0, in the mean
g = h5py.File('pred.h5', 'w'); g.attrs['kdpipe_format'] = 1; g.attrs['kdpipe_kind'] = 'detections'
g['masks'] = p
# a ground truth without class 9 (Ankle boot) and a prediction without it: left out of the mean
import shutil; shutil.copy('s.h5', 'g9.h5')
h = h5py.File('g9.h5', 'r+'); mm = h['masks'][:]; mm[mm == 10] = 0; h['masks'][:] = mm
q = p.copy(); q[q == 10] = 0
g2 = h5py.File('pred9.h5', 'w'); g2.attrs['kdpipe_format'] = 1; g2.attrs['kdpipe_kind'] = 'detections'; g2['masks'] = q
"
    "$B/detect-eval" --gt s.h5 --seg pred.h5 > a.json
    "$B/detect-eval" --gt g9.h5 --seg pred9.h5 > b.json
    run "$PY" -c "
import h5py, json, numpy as np
def ref(gt, pred):
    g = h5py.File(gt)['masks'][:].ravel().astype(np.int64); p = h5py.File(pred)['masks'][:].ravel().astype(np.int64)
    c = np.bincount(g * 11 + p, minlength=121).reshape(11, 11)
    tp = np.diag(c); uni = c.sum(0) + c.sum(1) - tp
    iou = [tp[v] / uni[v] if uni[v] else None for v in range(11)]
    ok = [v for v in iou if v is not None]
    return iou, sum(ok) / len(ok), tp.sum() / c.sum(), len(ok)
for gt, pred, out in (('s.h5', 'pred.h5', 'a.json'), ('g9.h5', 'pred9.h5', 'b.json')):
    a = json.load(open(out)); iou, miou, acc, n = ref(gt, pred)
    assert a['classes_in_mean'] == n and abs(a['mIoU'] - miou) < 1e-12 and abs(a['pixel_accuracy'] - acc) < 1e-12, (a, miou, acc)
    assert [v is None for v in a['iou']] == [v is None for v in iou]
    assert all(abs(x - y) < 1e-12 for x, y in zip(a['iou'], iou) if y is not None)
    print(n, a['iou'][3], a['iou'][10] is None, 0.5 < a['mIoU'] < 1)"
    assert_output "11 0 False True
10 0 True True"
}

@test "scenes: bad inputs fail clearly and leave no output" {
    gt_as_dets s.h5 dt.h5
    M=$("$PY" -c "import h5py; print(h5py.File('s.h5')['boxes'].shape[0])")
    # a box outside the canvas
    cp s.h5 out.h5
    "$PY" -c "
import h5py; f = h5py.File('out.h5', 'r+'); b = f['boxes'][:]; b[0] = [90, 10, 20, 5]; f['boxes'][:] = b"
    de_fails --gt out.h5 --dets dt.h5 \
        "detect-eval: out.h5: box 0 of image 0 (x 90, y 10, w 20, h 5) is outside the 96x96 image"
    run "$B/tensor-info" --png p out.h5
    assert_failure 1
    assert_output --partial "tensor-info: out.h5: box 0 of image 0 (x 90, y 10, w 20, h 5) is outside the 96x96 image"
    # offsets that do not add up, that decrease, of the wrong length
    cp s.h5 off.h5
    "$PY" -c "
import h5py; f = h5py.File('off.h5', 'r+'); o = f['box_offsets'][:]; o[-1] -= 1; f['box_offsets'][:] = o"
    de_fails --gt off.h5 --dets dt.h5 \
        "detect-eval: off.h5: /box_offsets runs from 0 to $((M - 1)), not from 0 to $M (the number of boxes)"
    cp s.h5 dec.h5
    "$PY" -c "
import h5py; f = h5py.File('dec.h5', 'r+'); o = f['box_offsets'][:]; o[1] = o[2] + 1; f['box_offsets'][:] = o"
    de_fails --gt dec.h5 --dets dt.h5 \
        "detect-eval: dec.h5: /box_offsets decreases at image 1"
    "$PY" -c "
import h5py, shutil
shutil.copy('s.h5', 'len.h5'); f = h5py.File('len.h5', 'r+'); o = f['box_offsets'][:]; del f['box_offsets']; f['box_offsets'] = o[:-1]
shutil.copy('s.h5', 'nolab.h5'); del h5py.File('nolab.h5', 'r+')['box_labels']
shutil.copy('s.h5', 'lab.h5'); f = h5py.File('lab.h5', 'r+'); l = f['box_labels'][:]; l[5] = 10; f['box_labels'][:] = l
shutil.copy('s.h5', 'mask.h5'); f = h5py.File('mask.h5', 'r+'); m = f['masks'][:]; m[7, 3, 4] = 12; f['masks'][:] = m
shutil.copy('s.h5', 'mshape.h5'); f = h5py.File('mshape.h5', 'r+'); m = f['masks'][:]; del f['masks']; f['masks'] = m[:-1]
p = h5py.File('pshape.h5', 'w'); p.attrs['kdpipe_format'] = 1; p.attrs['kdpipe_kind'] = 'detections'; p['masks'] = m[:, :95]
p = h5py.File('pval.h5', 'w'); p.attrs['kdpipe_format'] = 1; p.attrs['kdpipe_kind'] = 'detections'; m[2, 1, 0] = 11; p['masks'] = m
"
    de_fails --gt len.h5 --dets dt.h5 \
        "detect-eval: len.h5: /box_offsets has 200 entries for 200 images (needs 201)"
    de_fails --gt nolab.h5 --dets dt.h5 \
        "detect-eval: nolab.h5: a detection dataset needs /boxes, /box_labels and /box_offsets; /box_labels is missing"
    de_fails --gt lab.h5 --dets dt.h5 \
        "detect-eval: lab.h5: box 5: label 10 is out of range [0, 10)"
    # masks: a value that is no class, a shape unlike the images', a prediction unlike the ground truth
    de_fails --gt mask.h5 --seg s.h5 \
        "detect-eval: mask.h5: /masks: image 7, pixel (3, 4): 12 is not 0 or a class + 1 (1..10)"
    de_fails --gt mshape.h5 --seg s.h5 \
        "detect-eval: mshape.h5: /masks must be u8 [200,96,96] for its images"
    de_fails --gt s.h5 --seg pshape.h5 \
        "detect-eval: pshape.h5: /masks must be u8 [200,96,96] as s.h5's"
    de_fails --gt s.h5 --seg pval.h5 --dets dt.h5 \
        "detect-eval: pval.h5: /masks: image 2, pixel (1, 0): 11 is not 0 or a class + 1 (1..10)"
    # the box scores were computed first, yet nothing reaches standard output
    "$B/detect-eval" --gt s.h5 --seg pval.h5 --dets dt.h5 > o.txt 2> /dev/null || [ $? = 1 ]
    [ ! -s o.txt ]
    # masks scored against a file without them; a plain dataset is no detection ground truth
    "$B/dataset" "$FM" --split test --limit 10 -o ds.h5 > /dev/null
    de_fails --gt ds.h5 --seg s.h5 \
        "detect-eval: ds.h5: no /masks to score masks against (make it with dataset --scenes)"
    de_fails --gt ds.h5 --dets dt.h5 \
        "detect-eval: ds.h5: not a detection dataset (no /boxes)"
    # truncated scenes file
    head -c 30000 s.h5 > trunc.h5
    run "$B/detect-eval" --gt trunc.h5 --dets dt.h5 --seg trunc.h5
    assert_failure 1
    assert_output --partial "detect-eval: trunc.h5: "
    run "$B/tensor-info" --png p trunc.h5
    assert_failure 1
    assert_output --partial "trunc.h5"
}

@test "scenes: empty scenes (no objects at all, or some images without any)" {
    "$B/dataset" "$FM" --split test --limit 100 --scenes 6 --objects 0,0 -o e.h5 > e.json
    run cat e.json
    assert_output --partial '"boxes": 0, "dropped": 0'
    run "$B/tensor-info" --png p e.h5
    assert_success
    assert_output --partial "boxes                    f32  [0,4]                (empty)"
    [ -s p/boxes.png ] && [ -s p/masks.png ]
    echo '[]' > none.json
    run "$B/detect-eval" --gt e.h5 --dets none.json --seg e.h5
    assert_success
    assert_output '{"AP": -1, "AP50": -1, "AP75": -1, "APs": -1, "APm": -1, "APl": -1, "AR1": -1, "AR10": -1, "AR100": -1, "ARs": -1, "ARm": -1, "ARl": -1, "voc_ap50_11pt": -1, "voc_ap50_all": -1, "mIoU": 1, "pixel_accuracy": 1, "classes_in_mean": 1, "iou": [1, null, null, null, null, null, null, null, null, null, null]}'
    "$B/dataset" "$FM" --split test --limit 100 --scenes 30 --objects 0,2 -o z.h5 > /dev/null
    run "$PY" -c "import h5py, numpy as np; print((np.diff(h5py.File('z.h5')['box_offsets'][:]) == 0).any())"
    assert_output "True"
    gt_as_dets z.h5 zd.h5
    run "$B/detect-eval" --gt z.h5 --dets zd.h5
    assert_success
    assert_output --partial '{"AP": 1, "AP50": 1, "AP75": 1,'
}
