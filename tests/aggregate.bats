#!/usr/bin/env bats
# aggregate: usage, MSD regions and SSA checked against a NumPy reference on
# real teacher maps of real Fashion-MNIST views, pass-through, bad inputs.
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

setup_file() {
    B="$BATS_TEST_DIRNAME/../bin"
    T="$BATS_FILE_TMPDIR"
    "$B/dataset" /usr/share/datasets/fashion-mnist --split test --limit 48 --quiet -o "$T/fm.h5" >/dev/null
    "$B/model-init" --arch resnet20 --in-channels 1 --num-classes 10 -o "$T/r20.h5" >/dev/null
    # resnet20 on 28x28: the last stage is 64 x 7 x 7, stage 2 32 x 14 x 14
    "$B/augment" --policy mocov2 --views 2 --batch 24 --seed 3 --quiet "$T/fm.h5" |
        "$B/teacher-extract" -m "$T/r20.h5" --cam --maps last --quiet -o "$T/t.kdt" >/dev/null
    "$B/augment" --policy mocov2 --views 1 --batch 16 --limit 16 --seed 3 --quiet "$T/fm.h5" |
        "$B/teacher-extract" -m "$T/r20.h5" --maps 2 --no-feat --quiet -o "$T/t14.kdt" >/dev/null
}

setup() {
    AG="$BATS_TEST_DIRNAME/../bin/aggregate"
    TI="$BATS_TEST_DIRNAME/../bin/tensor-info"
    EX="$BATS_TEST_DIRNAME/../examples"
    T="$BATS_FILE_TMPDIR"
}

# check.py MODE STREAM OUT ARGS...: the NumPy reference (float64), written
# from METHODS.md without the C code, against the stream aggregate wrote.
write_check() {
    cat > "$T/check.py" <<'PY'
import math, sys
sys.path.insert(0, sys.argv[1])
import kdt
import numpy as np

mode, src, out = sys.argv[2], sys.argv[3], sys.argv[4]
args = dict(a.split('=') for a in sys.argv[5:])

def windows(n, s, stride):
    if s == 1:
        return [(0, n)]
    if stride == 0:  # adaptive_avg_pool2d cells
        return [(i * n // s, -(-(i + 1) * n // s)) for i in range(s)]
    k = -(-n // s)
    return [(a * stride, a * stride + k) for a in range((n - k) // stride + 1)]

def regions(x, scales, stride):
    out = []
    for s in scales:
        for y0, y1 in windows(x.shape[2], s, stride):
            for x0, x1 in windows(x.shape[3], s, stride):
                out.append(x[:, :, y0:y1, x0:x1].mean((2, 3)))
    return np.stack(out, 1)  # [B,R,C]

def ssa(x, k, gamma):
    B, C, h, w = x.shape
    n = h * w
    s = x.reshape(B, C, n)
    s = s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-12)
    y = np.zeros_like(s)
    for b in range(B):
        G = s[b].T @ s[b]
        for i in range(n):
            g = G[i].copy()
            g[i] = np.inf
            kept = np.argsort(-g, kind='stable')[:k]
            A = np.maximum(G[i, kept], 0) ** gamma
            if A.sum() > 0:
                v = (s[b][:, kept] * A).sum(1) / A.sum()
                y[b, :, i] = v / max(np.linalg.norm(v), 1e-12)
    return y.reshape(B, C, h, w)

worst, n, comp = 0.0, 0, 0
for (m0, a), (m1, b) in zip(kdt.read_frames(open(src, 'rb')), kdt.read_frames(open(out, 'rb'))):
    assert m0 == m1 and list(b)[:len(a)] == list(a), "metadata and tensors pass through, in order"
    assert all(np.array_equal(a[t], b[t]) for t in a), "every input tensor unchanged"
    x = a[args['in']].astype(np.float64)
    if mode == 'msd':
        scales = [int(v) for v in args['scales'].split(',')]
        z = regions(x, scales, int(args.get('stride', 0)))
        am = z.argmax(2)
        wt = np.where(am == am[:, :1], 1.0, float(args.get('wcomp', 2)))
        if 'l2' in args:
            z = z / np.maximum(np.linalg.norm(z, axis=2, keepdims=True), 1e-12)
        got, gw = b[args['out']], b[args['outw']]
        assert got.shape == z.shape and gw.shape == wt.shape, (got.shape, z.shape)
        assert np.array_equal(gw, wt), "categorisation weights"
        comp += int((wt != 1).sum())
        worst = max(worst, np.abs(got - z).max() / np.abs(z).max())
    else:
        y = ssa(x, int(args['k']), float(args.get('gamma', 2)))
        got = b[args['out']]
        assert got.shape == y.shape
        worst = max(worst, np.abs(got - y).max() / np.abs(y).max())
    n += 1
assert n > 0 and worst < 1e-5, (n, worst)
print("frames %d worst %.1e complementary %d" % (n, worst, comp))
PY
}

@test "aggregate --help prints usage to stdout" {
    run "$AG" --help
    assert_success
    assert_output --partial "Usage: aggregate --in NAME --scales LIST [OPTION]... [STREAM] [-o STREAM]"
}

@test "usage errors exit 2, verbatim" {
    run "$AG" --scales 1,2,4 "$T/t.kdt" -o "$T/o.kdt"
    assert_failure 2
    assert_line --index 0 "aggregate: --in NAME (the map tensor) is required"
    run "$AG" --in t.cam0 "$T/t.kdt" -o "$T/o.kdt"
    assert_failure 2
    assert_line --index 0 "aggregate: give one of --scales (multi-scale regions) or --sparse-topk (sparse aggregation)"
    run "$AG" --in t.cam0 --scales 1,2 --sparse-topk 4 "$T/t.kdt" -o "$T/o.kdt"
    assert_failure 2
    assert_line --index 0 "aggregate: give one of --scales (multi-scale regions) or --sparse-topk (sparse aggregation)"
    run "$AG" --in t.cam0 --scales 2,4 "$T/t.kdt" -o "$T/o.kdt"
    assert_failure 2
    assert_line --index 0 "aggregate: --scales: the first scale must be 1 (region 0 is the global average)"
    run "$AG" --in t.map0 --sparse-topk 4 --stride 1 "$T/t.kdt" -o "$T/o.kdt"
    assert_failure 2
    assert_line --index 0 "aggregate: --stride, --weight-comp, --l2 and --out-weights apply to --scales"
    run "$AG" --in camera --scales 1,2 "$T/t.kdt" -o "$T/o.kdt"
    assert_failure 2
    assert_line --index 0 "aggregate: --in camera: not a PREFIX FAMILY NUMBER name (such as t.cam0): give --out"
    run "$AG" --in t.cam0 --scales 1,2 --out t.cam0 "$T/t.kdt" -o "$T/o.kdt"
    assert_failure 2
    assert_line --index 0 "aggregate: the output 't.cam0' would replace the input"
    run "$AG" --in t.cam0 --sparse-topk 0 "$T/t.kdt" -o "$T/o.kdt"
    assert_failure 2
    assert_line --index 0 "aggregate: --sparse-topk: 0 is outside [1, 1048576]"
    [ ! -e "$T/o.kdt" ]
}

@test "--scales 1,2,4 on real class-activation maps: t.msd0/t.msdw0 equal the NumPy reference, the rest passes through" {
    write_check
    run "$AG" --in t.cam0 --scales 1,2,4 "$T/t.kdt" -o "$T/m.kdt"
    assert_success
    assert_output --regexp '^[{]"frames": 2, "images": 48, "images_per_s": [0-9.]+[}]$'
    run "$TI" "$T/m.kdt"
    assert_output --partial "  t.msd0                   f32  [24,21,10]"
    assert_output --partial "  t.msdw0                  f32  [24,21]"
    run /usr/bin/python3 "$T/check.py" "$EX" msd "$T/t.kdt" "$T/m.kdt" in=t.cam0 scales=1,2,4 out=t.msd0 outw=t.msdw0
    assert_success
    assert_output --regexp "^frames 2 worst .* complementary [1-9]"
    # region 0 is the global average: the logits
    run /usr/bin/python3 -c "
import sys; sys.path.insert(0, '$EX'); import kdt, numpy as np
for m, t in kdt.read_frames(open('$T/m.kdt', 'rb')):
    assert np.abs(t['t.msd0'][:, 0] - t['t.logits0']).max() < 1e-5 * np.abs(t['t.logits0']).max()
print('ok')"
    assert_output "ok"
}

@test "sliding windows (--stride), --weight-comp, --l2, --out names, a feature map, in a pipe" {
    write_check
    "$AG" --in t.cam1 --scales 1,3,2 --stride 2 --weight-comp 0.5 --l2 --out a.z --out-weights a.w < "$T/t.kdt" | cat > "$T/s.kdt"
    run /usr/bin/python3 "$T/check.py" "$EX" msd "$T/t.kdt" "$T/s.kdt" in=t.cam1 scales=1,3,2 stride=2 wcomp=0.5 l2=1 out=a.z outw=a.w
    assert_success
    run "$TI" "$T/s.kdt"
    # 7x7, stride 2: scale 3 windows of 3x3 at 0,2,4 (9), scale 2 of 4x4 at 0,2 (4)
    assert_output --partial "  a.z                      f32  [24,14,10]"
    run "$AG" --in t.map1 --scales 1,2,4 "$T/t.kdt" -o "$T/f.kdt"
    assert_success
    run /usr/bin/python3 "$T/check.py" "$EX" msd "$T/t.kdt" "$T/f.kdt" in=t.map1 scales=1,2,4 out=t.msd1 outw=t.msdw1
    assert_success
}

@test "--sparse-topk on real feature maps (7x7 and 14x14): t.ssa{i} equals the NumPy reference" {
    write_check
    run "$AG" --in t.map0 --sparse-topk 8 "$T/t.kdt" -o "$T/a.kdt"
    assert_success
    run /usr/bin/python3 "$T/check.py" "$EX" ssa "$T/t.kdt" "$T/a.kdt" in=t.map0 k=8 out=t.ssa0
    assert_success
    run "$AG" --in t.map0 --sparse-topk 5 --gamma 1.5 --quiet "$T/t14.kdt" -o "$T/b.kdt"
    assert_success
    run /usr/bin/python3 "$T/check.py" "$EX" ssa "$T/t14.kdt" "$T/b.kdt" in=t.map0 k=5 gamma=1.5 out=t.ssa0
    assert_success
    run "$TI" "$T/b.kdt"
    assert_output --partial "  t.ssa0                   f32  [16,32,14,14]"
}

@test "bad inputs: missing tensor, wrong rank, scales too large, NaN, truncated stream; nothing left behind" {
    run "$AG" --in t.cam7 --scales 1,2 "$T/t.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "aggregate: $T/t.kdt: frame 0 has no tensor 't.cam7'"
    run "$AG" --in t.logits0 --scales 1,2 "$T/t.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "aggregate: $T/t.kdt: frame 0: 't.logits0' is f32 of rank 2, not f32 [B,C,h,w]"
    run "$AG" --in t.cam0 --scales 1,2,8 "$T/t.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "aggregate: $T/t.kdt: frame 0: 't.cam0' [24,10,7,7]: regions: scale 8 does not fit a 7x7 map (1 to 7)"
    /usr/bin/python3 -c "
import sys; sys.path.insert(0, '$EX'); import kdt, numpy as np
out = open('$T/nan.kdt', 'wb')
for i, (m, t) in enumerate(kdt.read_frames(open('$T/t.kdt', 'rb'))):
    if i == 1: t['t.cam0'][3, 2, 1, 5] = np.nan
    kdt.write_frame(out, m, t)"
    run "$AG" --in t.cam0 --scales 1,2 "$T/nan.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "aggregate: $T/nan.kdt: frame 1: 't.cam0' has a non-finite value (nan) at [3,2,1,5]"
    head -c 300000 "$T/t.kdt" > "$T/cut.kdt"
    run "$AG" --in t.cam0 --scales 1,2 "$T/cut.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output --regexp "^aggregate: $T/cut.kdt: frame 0 at byte 0: truncated payload \([0-9]+ of [0-9]+ bytes; stream ends at byte 300000\)$"
    [ ! -e "$T/o.kdt" ]
    # to a pipe: the consumer sees an unfinished stream, not a clean end
    run sh -c "'$AG' --in t.cam0 --scales 1,2 '$T/nan.kdt' | '$TI' -"
    assert_failure 1
}

@test "--progress: frames of the announced length; stderr empty without it; deterministic, --deflate" {
    "$AG" --in t.cam0 --scales 1,2,4 --progress "$T/t.kdt" -o "$T/p.kdt" 2>"$T/err" >/dev/null
    grep -q "aggregate: 48 images  2/2 100%  .* frames/s  0s left" "$T/err"
    "$AG" --in t.cam0 --scales 1,2,4 "$T/t.kdt" -o "$T/q.kdt" 2>"$T/err" >/dev/null
    [ ! -s "$T/err" ]
    cmp "$T/p.kdt" "$T/q.kdt"
    "$AG" --in t.cam0 --scales 1,2,4 --deflate --threads 1 "$T/t.kdt" -o "$T/d.kdt" >/dev/null
    [ "$(stat -c %s "$T/d.kdt")" -lt "$(stat -c %s "$T/q.kdt")" ]
    "$TI" "$T/d.kdt" > "$T/d.txt"
    "$TI" "$T/q.kdt" > "$T/q.txt"
    cmp "$T/d.txt" "$T/q.txt"
}
