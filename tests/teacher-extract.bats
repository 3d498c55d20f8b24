#!/usr/bin/env bats
# teacher-extract: usage, stream filter round trip (pass-through, maps,
# determinism), features files, bad inputs, and torchvision interop.
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

setup() {
    TE="$BATS_TEST_DIRNAME/../bin/teacher-extract"
    MI="$BATS_TEST_DIRNAME/../bin/model-init"
    AUG="$BATS_TEST_DIRNAME/../bin/augment"
    FM="$BATS_TEST_DIRNAME/fixtures/aug_fm.h5"   # 96 Fashion-MNIST images, mean/std
    T="$BATS_TEST_TMPDIR"
    [ -s "$T/r20.h5" ] || "$MI" --arch resnet20 --in-channels 1 --num-classes 10 --head mlp:32:16 -o "$T/r20.h5" >/dev/null
    [ -s "$T/s.kdt" ] || "$AUG" --policy mocov2 --views 2 --batch 16 --limit 32 --seed 1 "$FM" -o "$T/s.kdt" >/dev/null
}

@test "teacher-extract --help prints usage to stdout" {
    run "$TE" --help
    assert_success
    assert_output --partial "Usage: teacher-extract -m MODEL.h5"
}

@test "usage errors exit 2" {
    run "$TE" "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 2
    assert_output --partial "-m MODEL.h5 (or --from-cache CACHE.h5) is required"
    run "$TE" -m "$T/r20.h5" --bogus
    assert_failure 2
    run "$TE" -m "$T/r20.h5" --maps 9 "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 2
    assert_output --partial "stages 1..3"
    run "$TE" -m "$T/r20.h5" --features "$FM" --maps 2 -o "$T/f.h5"
    assert_failure 2
    run "$TE" -m "$T/r20.h5" --features "$FM" -o -
    assert_failure 2
    run "$TE" -m "$T/r20.h5" --batch 0 "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 2
    [ ! -e "$T/o.kdt" ] && [ ! -e "$T/f.h5" ]
}

@test "stream filter adds emb/feat/logits/map per view and passes the rest through" {
    run "$TE" -m "$T/r20.h5" --maps 2 "$T/s.kdt" -o "$T/o.kdt"
    assert_success
    assert_output --partial '"frames": 2, "images": 64'
    # the added tensors are there (wrong rank for a view, so the error names them)
    for t in t.emb0 t.emb1 t.feat0 t.feat1 t.logits1; do
        run "$TE" -m "$T/r20.h5" --views "$t" "$T/o.kdt" -o "$T/x.kdt"
        assert_failure 1
        assert_output --partial "'$t' is f32 of rank 2"
    done
    run "$TE" -m "$T/r20.h5" --views t.map1 "$T/o.kdt" -o "$T/x.kdt"
    assert_failure 1
    assert_output --partial "'t.map1' has 32 channels, the model takes 1"
    # views pass through: a second pass with another prefix works on the output
    run "$TE" -m "$T/r20.h5" --prefix s. --views view1 "$T/o.kdt" -o "$T/o2.kdt"
    assert_success
    # every tensor of the first output (views, index, label, t.*) is listed
    # unchanged in the second (dtype, shape, min/mean/max), and s.* is added
    TI="$BATS_TEST_DIRNAME/../bin/tensor-info"
    "$TI" "$T/o.kdt" > "$T/o.txt"
    "$TI" "$T/o2.kdt" > "$T/o2.txt"
    run sh -c "grep -v -F -x -f '$T/o2.txt' '$T/o.txt'"
    assert_output ""
    [ "$(grep -c '^  view1 ' "$T/o2.txt")" -eq 2 ]
    [ "$(grep -c '^  s.emb1 ' "$T/o2.txt")" -eq 2 ]
}

@test "stream filter is deterministic and works in a pipe" {
    "$TE" -m "$T/r20.h5" "$T/s.kdt" -o "$T/a.kdt" >/dev/null
    "$AUG" --policy mocov2 --views 2 --batch 16 --limit 32 --seed 1 "$FM" | "$TE" -m "$T/r20.h5" --threads 1 | cat > "$T/b.kdt"
    cmp "$T/a.kdt" "$T/b.kdt"
}

@test "features file from a dataset file" {
    run "$TE" -m "$T/r20.h5" --features "$FM" --limit 40 --batch 16 -o "$T/f.h5"
    assert_success
    assert_output --partial '"images": 40, "feat_dim": 64, "num_classes": 10'
    run h5ls "$T/f.h5"
    assert_output --partial "features                 Dataset {40/Inf, 64}"
    assert_output --partial "logits                   Dataset {40/Inf, 10}"
    assert_output --partial "labels                   Dataset {40/Inf}"
    run h5dump -a kdpipe_kind "$T/f.h5"
    assert_output --partial '"features"'
    run h5dump -a arch "$T/f.h5"
    assert_output --partial '"resnet20"'
    # batch size does not change the result
    "$TE" -m "$T/r20.h5" --features "$FM" --limit 40 --batch 40 -o "$T/g.h5" >/dev/null
    run h5diff -d 1e-6 "$T/f.h5" "$T/g.h5" features
    assert_success
}

@test "a frame without the requested view: exit 1, no output left" {
    run "$TE" -m "$T/r20.h5" --views view7 "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output --partial "frame 0 has no tensor 'view7'"
    [ ! -e "$T/o.kdt" ]
}

@test "wrong channel count: exit 1 with a clear message" {
    "$MI" --arch resnet20 --in-channels 3 -o "$T/rgb.h5" >/dev/null
    run "$TE" -m "$T/rgb.h5" "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output --partial "'view0' has 1 channels, the model takes 3"
    [ ! -e "$T/o.kdt" ]
    run "$TE" -m "$T/rgb.h5" --features "$FM" -o "$T/f.h5"
    assert_failure 1
    assert_output --partial "images have 1 channels, the model takes 3"
    [ ! -e "$T/f.h5" ]
}

@test "bad models: missing, not a model, unknown architecture, missing tensor, wrong shape" {
    run "$TE" -m "$T/none.h5" "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 1
    run "$TE" -m "$FM" "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output --partial "not a model"
    printf 'not hdf5 at all' > "$T/junk.h5"
    run "$TE" -m "$T/junk.h5" "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 1
    # the rest edits model files with h5py (skip convention: scripts/run-tests)
    /usr/bin/python3 -c "import h5py" 2>/dev/null || skip "needs python3-h5py"
    cp "$T/r20.h5" "$T/bad.h5"
    /usr/bin/python3 -c "import h5py,sys; f=h5py.File(sys.argv[1],'a'); f.attrs['arch']='resnet99'" "$T/bad.h5"
    run "$TE" -m "$T/bad.h5" "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output --partial "unknown architecture 'resnet99'"
    cp "$T/r20.h5" "$T/bad.h5"
    /usr/bin/python3 -c "import h5py,sys; f=h5py.File(sys.argv[1],'a'); del f['layer2.1.conv2.weight']" "$T/bad.h5"
    run "$TE" -m "$T/bad.h5" "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output --partial "missing tensor 'layer2.1.conv2.weight'"
    cp "$T/r20.h5" "$T/bad.h5"
    /usr/bin/python3 -c "
import h5py,sys,numpy as np
f=h5py.File(sys.argv[1],'a'); del f['fc.weight']; f['fc.weight']=np.zeros((10,32),np.float32)" "$T/bad.h5"
    run "$TE" -m "$T/bad.h5" "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output --partial "'fc.weight' has shape [10,32], architecture resnet20 needs [10,64]"
    [ ! -e "$T/o.kdt" ]
}

@test "a negative BN running variance in the model is refused at load" {
    cp "$T/r20.h5" "$T/bad.h5"
    /usr/bin/python3 -c "import h5py,sys; f=h5py.File(sys.argv[1],'a'); f['bn1.running_var'][3]=-0.5" "$T/bad.h5"
    run "$TE" -m "$T/bad.h5" "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "teacher-extract: $T/bad.h5: bn1.running_var[3] = -0.5 is negative (a running variance)"
    [ ! -e "$T/o.kdt" ]
}

@test "non-finite views are refused, naming the frame and tensor; the old output is kept" {
    /usr/bin/python3 -c "
import sys, numpy as np; sys.path.insert(0, '$BATS_TEST_DIRNAME/../examples'); import kdt
meta, t = next(kdt.read_frames(open('$T/s.kdt', 'rb')))
t['view1'][2, 0, 3, 4] = np.nan
with open('$T/nan.kdt', 'wb') as f: kdt.write_frame(f, meta, t)
t['view1'][2, 0, 3, 4] = 0; t['view0'][:] = np.inf
with open('$T/inf.kdt', 'wb') as f: kdt.write_frame(f, meta, t)"
    echo old > "$T/o.kdt"
    run "$TE" -m "$T/r20.h5" "$T/nan.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "teacher-extract: $T/nan.kdt: frame 0: 'view1': image 2 holds a non-finite value (nan)"
    run "$TE" -m "$T/r20.h5" "$T/inf.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "teacher-extract: $T/inf.kdt: frame 0: 'view0': image 0 holds a non-finite value (inf)"
    [ "$(cat "$T/o.kdt")" = old ]
}

@test "--features: a model whose features overflow is refused, no file written" {
    cp "$T/r20.h5" "$T/big.h5"
    /usr/bin/python3 -c "
import h5py, sys; f = h5py.File(sys.argv[1], 'a')
for k in ('conv1.weight', 'layer1.0.conv1.weight', 'layer1.0.conv2.weight'): f[k][...] = f[k][...] * 1e25" "$T/big.h5"
    run "$TE" -m "$T/big.h5" --features "$FM" --limit 40 --batch 16 -o "$T/f.h5"
    assert_failure 1
    assert_output "teacher-extract: $FM: rows 0..15: the model's features of images 0..15 are not finite (its weights overflow?)"
    [ ! -e "$T/f.h5" ]
}

@test "truncated or empty stream" {
    head -c 5000 "$T/s.kdt" > "$T/t.kdt"
    run "$TE" -m "$T/r20.h5" "$T/t.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "teacher-extract: $T/t.kdt: frame 0 at byte 0: truncated payload (4960 of 100777 bytes; stream ends at byte 5000)"
    [ ! -e "$T/o.kdt" ]
    : > "$T/e.kdt"
    run "$TE" -m "$T/r20.h5" "$T/e.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "teacher-extract: $T/e.kdt: the stream ended without its end marker (the writer died?) after 0 frames"
    [ ! -e "$T/o.kdt" ]
    /usr/bin/python3 -c "import sys; sys.path.insert(0, '$BATS_TEST_DIRNAME/../examples'); import kdt; kdt.write_end(sys.stdout.buffer, 0)" > "$T/e.kdt"
    run "$TE" -m "$T/r20.h5" "$T/e.kdt" -o "$T/o.kdt"
    assert_success
    assert_output --partial '"frames": 0'
}

@test "a torchvision resnet18 converted by torch2kd.py gives torchvision's features" {
    /usr/bin/python3 -c "import torch, torchvision, h5py" 2>/dev/null || skip "needs python3-torch python3-torchvision python3-h5py"
    /usr/bin/python3 "$BATS_TEST_DIRNAME/gen/models_tv_check.py" make "$T" "$FM" 8
    run /usr/bin/python3 "$BATS_TEST_DIRNAME/../scripts/torch2kd.py" "$T/tv.pt" -o "$T/tv.h5" --arch resnet18 --cifar-stem
    assert_success
    "$TE" -m "$T/tv.h5" --features "$FM" --limit 8 -o "$T/tvf.h5" >/dev/null
    run /usr/bin/python3 "$BATS_TEST_DIRNAME/gen/models_tv_check.py" compare "$T" "$T/tvf.h5"
    assert_success
    # and back: kd2torch gives the same tensors
    run /usr/bin/python3 "$BATS_TEST_DIRNAME/../scripts/kd2torch.py" "$T/tv.h5" "$T/back.pt"
    assert_success
    /usr/bin/python3 -c "
import torch,sys
a=torch.load(sys.argv[1]); b=torch.load(sys.argv[2])
assert set(a)==set(b) and all(torch.equal(a[k],b[k]) for k in a)" "$T/tv.pt" "$T/back.pt"
}

@test "pipe after augment --views 2 --batch 32: adds t.* per view, passes views, index, label and metadata through" {
    TI="$BATS_TEST_DIRNAME/../bin/tensor-info"
    "$AUG" --policy mocov2 --views 2 --batch 32 --limit 64 --seed 3 "$FM" -o "$T/in.kdt" >/dev/null
    "$AUG" --policy mocov2 --views 2 --batch 32 --limit 64 --seed 3 "$FM" | "$TE" -m "$T/r20.h5" | cat > "$T/out.kdt"
    "$TI" "$T/in.kdt" > "$T/in.txt"
    "$TI" "$T/out.kdt" > "$T/out.txt"
    # every line of the input's listing (frame metadata, views, index, label) is unchanged
    run sh -c "grep -v -F -x -f '$T/out.txt' '$T/in.txt'"
    assert_output ""
    for t in t.emb0 t.emb1 t.feat0 t.feat1 t.logits0 t.logits1; do
        [ "$(grep -c "^  $t " "$T/out.txt")" -eq 2 ]
    done
    grep -q '^  t.emb0  *f32  \[32,16\]' "$T/out.txt"
    grep -q '^  t.feat1  *f32  \[32,64\]' "$T/out.txt"
}

@test "--progress: frames of the announced length and time left; stderr empty without it" {
    "$TE" -m "$T/r20.h5" --progress "$T/s.kdt" -o "$T/o.kdt" 2>"$T/err" >/dev/null
    grep -q "teacher-extract: 64 images, .* images/s  2/2 100%  .* frames/s  0s left" "$T/err"
    "$TE" -m "$T/r20.h5" "$T/s.kdt" -o "$T/o.kdt" 2>"$T/err" >/dev/null
    [ ! -s "$T/err" ]
    "$TE" -m "$T/r20.h5" --progress --features "$FM" --limit 40 --batch 16 -o "$T/f.h5" 2>"$T/err" >/dev/null
    grep -q "teacher-extract: features  40/40 100%  .* images/s  0s left" "$T/err"
    "$TE" -m "$T/r20.h5" --features "$FM" --limit 40 -o "$T/f.h5" 2>"$T/err" >/dev/null
    [ ! -s "$T/err" ]
}

@test "--cam: t.cam{i} [B,K,h,w], whose average over h x w is t.logits{i}, also in chunks of --batch" {
    KDT="$BATS_TEST_DIRNAME/../examples"
    "$MI" --arch mobilenet_v2 --in-channels 1 --num-classes 10 -o "$T/mv2.h5" >/dev/null
    run "$TE" -m "$T/r20.h5" --cam --batch 6 "$T/s.kdt" -o "$T/cam.kdt"
    assert_success
    "$TE" -m "$T/mv2.h5" --cam --prefix m. "$T/cam.kdt" -o "$T/cam2.kdt" >/dev/null
    run /usr/bin/python3 - "$KDT" "$T/cam2.kdt" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import kdt
import numpy as np
n = 0
for meta, t in kdt.read_frames(open(sys.argv[2], 'rb')):
    for p, shape in (('t.', (16, 10, 7, 7)), ('m.', (16, 10, 1, 1))):
        for i in (0, 1):
            cam, lg = t['%scam%d' % (p, i)], t['%slogits%d' % (p, i)]
            assert cam.shape == shape and cam.dtype == np.float32, (p, cam.shape)
            err = np.abs(cam.astype(np.float64).mean((2, 3)) - lg).max() / np.abs(lg).max()
            assert err < 1e-5, (p, i, err)
            assert np.ptp(cam) > 0.1 * np.abs(lg).max()  # not a constant map
            n += 1
print("checked", n)
PY
    assert_success
    assert_output "checked 8"
}

@test "--cam refuses a model without a classifier or with a nonlinear one; --cam is for stream mode" {
    "$MI" --arch resnet20 --in-channels 1 --head mlp:32:16 -o "$T/nohead.h5" >/dev/null
    run "$TE" -m "$T/nohead.h5" --cam "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "teacher-extract: model: resnet20 has no classifier: no class-activation map"
    "$MI" --arch mobilenet_v3_large --in-channels 1 --num-classes 10 -o "$T/mv3.h5" >/dev/null
    run "$TE" -m "$T/mv3.h5" --cam "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "teacher-extract: model: mobilenet_v3_large's classifier is not one linear map of the pooled last stage: no class-activation map"
    run "$TE" -m "$T/r20.h5" --cam --features "$FM" -o "$T/f.h5"
    assert_failure 2
    assert_output --partial "teacher-extract: --views, --maps and --cam apply to stream mode only"
    [ ! -e "$T/o.kdt" ] && [ ! -e "$T/f.h5" ]
}

@test "--threads above the CPUs the process may use warns once; the default follows the affinity mask" {
    run sh -c "taskset -c 0 '$TE' -m '$T/r20.h5' --features '$FM' --limit 16 --threads 8 -o '$T/f8.h5' 2>&1 >/dev/null"
    assert_success
    assert_output "teacher-extract: --threads 8 is more than the 1 CPU this process may use (affinity mask, cgroup quota): it will run slower, not faster"
    run sh -c "taskset -c 0 '$TE' -m '$T/r20.h5' --features '$FM' --limit 16 -o '$T/f1.h5' 2>&1 >/dev/null"
    assert_success
    assert_output ""
    cmp <(h5dump -d features "$T/f8.h5" 2>/dev/null | tail -n +3) <(h5dump -d features "$T/f1.h5" 2>/dev/null | tail -n +3)
}

@test "a small deflated frame of large views is refused before the model plans gigabytes (KDPIPE_MAX_IMAGE, KDPIPE_MAX_MEMORY_MB)" {
    /usr/bin/python3 -c "
import sys; sys.path.insert(0, '$BATS_TEST_DIRNAME/../examples'); import kdt, numpy as np
with open('$T/huge.kdt', 'wb') as f:
    kdt.write_frame(f, {'epoch': '0', 'step': '0', 'batches': '1'}, {'view0': np.zeros((4, 1, 2048, 2048), np.float32)}, deflate=True)
    kdt.write_end(f, 1)"
    [ "$(stat -c %s "$T/huge.kdt")" -lt 400000 ]
    run /usr/bin/time -f "%M KB" "$TE" -m "$T/r20.h5" "$T/huge.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_line --index 0 "teacher-extract: model: input of 2048x2048 is larger than the bound of 1024 pixels a side (KDPIPE_MAX_IMAGE raises it)"
    [ "${lines[2]% KB}" -lt 300000 ]
    # (the eval plan of resnet20 needs ~5.7 GB here since the direct 3x3 kernel
    # replaced im2col's columns: a bound of 4096 MB refuses it)
    run env KDPIPE_MAX_IMAGE=2048 KDPIPE_MAX_MEMORY_MB=4096 /usr/bin/time -f "%M KB" "$TE" -m "$T/r20.h5" "$T/huge.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_line --index 0 --regexp "^teacher-extract: model: 4 images of 2048x2048 need [0-9]+ MB of activations, more than the bound of 4096 MB \(KDPIPE_MAX_MEMORY_MB raises it\)$"
    [ "${lines[2]% KB}" -lt 300000 ]
    run env KDPIPE_MAX_IMAGE=2048 KDPIPE_MAX_MEMORY_MB=4k "$TE" -m "$T/r20.h5" "$T/huge.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "teacher-extract: KDPIPE_MAX_MEMORY_MB='4k' is not a number of MB in [1, 1048576]"
    [ ! -e "$T/o.kdt" ]
    run env KDPIPE_MAX_MEMORY_MB=1 "$TE" -m "$T/r20.h5" "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output --regexp "^teacher-extract: model: 16 images of 28x28 need [0-9]+ MB of activations, more than the bound of 1 MB"
}
