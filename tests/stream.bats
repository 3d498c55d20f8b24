#!/usr/bin/env bats
# The tensor stream across languages: C (augment, tensor-info) and Python
# (examples/kdt.py) read and write the same bytes.
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

B="$BATS_TEST_DIRNAME/../bin"
KDT="$BATS_TEST_DIRNAME/../examples/kdt.py"
PY=/usr/bin/python3

setup() {
    cd "$BATS_TEST_TMPDIR"
    "$B/dataset" --limit 40 --split test /usr/share/datasets/fashion-mnist -o ds.h5 >/dev/null
}

alltypes() { # a stream with every dtype, made by Python
    "$PY" -c "
import sys; sys.path.insert(0, '$(dirname "$KDT")'); import kdt, numpy as np
t = {'u8': np.arange(6, dtype=np.uint8).reshape(2,3), 'i32': np.array([-7, 2**31-1], np.int32),
     'i64': np.array([-2**40, 5], np.int64), 'f32': np.linspace(-1, 1, 12, dtype=np.float32).reshape(1,3,2,2),
     'empty': np.zeros((0, 4), np.float32)}
kdt.write_frame(sys.stdout.buffer, {'epoch': '0', 'step': '0'}, t)
kdt.write_frame(sys.stdout.buffer, {'epoch': '0', 'step': '1'}, t, deflate=True)
kdt.write_end(sys.stdout.buffer, 2)"
}

@test "stream: C -> Python -> C is byte-identical, plain and deflated" {
    "$B/augment" --limit 40 --batch 16 --quiet ds.h5 > a.kdt
    "$PY" "$KDT" < a.kdt > b.kdt
    cmp a.kdt b.kdt
    "$B/augment" --limit 40 --batch 16 --deflate --quiet ds.h5 > c.kdt
    run "$B/tensor-info" --json c.kdt
    assert_success
    "$PY" "$KDT" < c.kdt | "$B/tensor-info" --json > d.json
    [ "$output" = "$(cat d.json)" ]
}

@test "stream: every dtype written by Python is read by C" {
    alltypes > t.kdt
    run "$B/tensor-info" t.kdt
    assert_success
    assert_output --partial "u8   [2,3]"
    assert_output --partial "i32  [2]                  min -7"
    [[ "$output" == *"i64  [2]                  min -1.09951e+12"* ]]
    assert_output --partial "f32  [1,3,2,2]"
    assert_output --partial "empty                    f32  [0,4]                (empty)"
    assert_output --partial "2 frames"
    # and back through Python with the same content (kdt.py writes plain frames)
    "$PY" "$KDT" < t.kdt > u.kdt
    [ "$("$B/tensor-info" --json t.kdt)" = "$("$B/tensor-info" --json u.kdt)" ]
}

@test "stream: a truncated stream names the byte offset, in C and in Python" {
    alltypes > t.kdt
    size=$(stat -c %s t.kdt)
    head -c $((size - 51 - 3)) t.kdt > cut.kdt   # 3 bytes short of frame 1's end
    run "$B/tensor-info" cut.kdt
    assert_failure 1
    assert_output --regexp "tensor-info: cut.kdt: frame 1 at byte [0-9]+: truncated payload"
    run "$PY" "$KDT" < cut.kdt
    assert_failure 1
    assert_output --partial "frame 1 at byte"
}

@test "stream: a flipped byte is a CRC error, never garbage" {
    alltypes > t.kdt
    "$PY" -c "b=bytearray(open('t.kdt','rb').read()); b[60]^=0x10; open('f.kdt','wb').write(b)"
    run "$B/tensor-info" f.kdt
    assert_failure 1
    assert_output --partial "frame 0 at byte 0: CRC mismatch"
    run "$PY" "$KDT" < f.kdt
    assert_failure 1
    assert_output --partial "CRC mismatch"
}

@test "stream: an empty stream is a lone end marker; empty input is refused" {
    "$PY" -c "import sys; sys.path.insert(0, '$(dirname "$KDT")'); import kdt; kdt.write_end(sys.stdout.buffer, 0)" > e.kdt
    run "$B/tensor-info" e.kdt
    assert_success
    assert_output "0 frames"
    run "$B/tensor-info" < /dev/null
    assert_failure 1
    assert_output "tensor-info: <stdin>: the stream ended without its end marker (the writer died?) after 0 frames"
}

@test "stream: C and Python end a stream with the same end marker, and refuse a stream without it" {
    "$B/augment" --limit 40 --batch 16 --quiet ds.h5 > a.kdt
    "$PY" -c "import sys; sys.path.insert(0, '$(dirname "$KDT")'); import kdt; kdt.write_end(sys.stdout.buffer, 3)" > end.kdt
    [ "$(stat -c %s end.kdt)" = 51 ]
    tail -c 51 a.kdt | cmp - end.kdt
    head -c -51 a.kdt > cut.kdt
    run "$B/tensor-info" cut.kdt
    assert_failure 1
    assert_line "frame 2: epoch=0 step=2 batch=2 batches=3 epochs=1 seed=0 policy=mocov2"
    assert_line "tensor-info: cut.kdt: the stream ended without its end marker (the writer died?) after 3 frames"
    run sh -c "'$PY' '$KDT' < cut.kdt > /dev/null"
    assert_failure 1
    assert_output "kdt.py: the stream ended without its end marker (the writer died?) after 3 frames"
    cat a.kdt a.kdt > twice.kdt
    run "$B/tensor-info" twice.kdt
    assert_failure 1
    assert_output --partial "tensor-info: twice.kdt: frame 3 at byte $(( $(stat -c %s a.kdt) - 51 )): data after the end marker (streams concatenated?)"
}

# bad_chunk IN OUT: IN rewritten with 16-image checksummed chunks and a byte
# of the 4th chunk flipped, so that augment --max-memory 0 fails at frame 3.
bad_chunk() {
    "$PY" - "$1" "$2" <<'PY'
import h5py, sys
with h5py.File(sys.argv[1]) as a, h5py.File(sys.argv[2], "w") as b:
    b.attrs.update(a.attrs)
    for name in a:
        im = name == "images"
        o = b.create_dataset(name, data=a[name][()], chunks=(16,) + a[name].shape[1:] if im else None, fletcher32=im)
        o.attrs.update(a[name].attrs)
    ci = b["images"].id.get_chunk_info(3)
with open(sys.argv[2], "r+b") as f:
    f.seek(ci.byte_offset + ci.size // 2); x = f.read(1)[0]; f.seek(-1, 1); f.write(bytes([x ^ 0x5A]))
PY
}

@test "stream: a stage that dies mid-stream makes every later stage fail, not train on a short stream" {
    "$B/dataset" --limit 64 --split test /usr/share/datasets/fashion-mnist -o d64.h5 >/dev/null
    bad_chunk d64.h5 bad.h5
    "$B/model-init" --arch resnet8x4 --in-channels 1 --num-classes 10 -o m.h5 >/dev/null
    aug="'$B/augment' --max-memory 0 --no-shuffle --batch 16 --views 1 --policy none --quiet bad.h5"
    run sh -c "$aug | '$B/distill-step' --method ce -m m.h5 -o out.h5 > log.json"
    assert_failure 1
    assert_line --index 0 "augment: bad.h5: cannot read 'images' (corrupt file or incompatible type)"
    assert_line --index 1 "distill-step: <stdin>: the stream ended without its end marker (the writer died?) after 3 frames"
    [ ! -e out.h5 ]
    run sh -c "$aug | '$B/teacher-extract' -m m.h5 | '$B/tensor-info' > /dev/null"
    assert_failure 1
    assert_line --index 1 "teacher-extract: <stdin>: the stream ended without its end marker (the writer died?) after 3 frames"
    assert_line --index 2 "tensor-info: <stdin>: the stream ended without its end marker (the writer died?) after 3 frames"
    # a Python stage that raises leaves no end marker either
    run sh -c "'$B/augment' --batch 16 --views 1 --quiet d64.h5 | '$PY' -c \"
import sys; sys.path.insert(0, '$(dirname "$KDT")'); import kdt
with kdt.Writer(sys.stdout.buffer) as w:
    for k, (meta, t) in enumerate(kdt.read_frames(sys.stdin.buffer)):
        if k == 2: raise SystemExit('filter: gave up')
        w.write(meta, t)\" | '$B/distill-step' --method ce -m m.h5 -o out.h5 > /dev/null"
    assert_failure 1
    assert_output "filter: gave up
distill-step: <stdin>: the stream ended without its end marker (the writer died?) after 2 frames"
    [ ! -e out.h5 ]
}

@test "stream: distill-step refuses a complete stream shorter than the schedule its frames announce" {
    "$B/dataset" --limit 64 --split test /usr/share/datasets/fashion-mnist -o d64.h5 >/dev/null
    "$B/model-init" --arch resnet8x4 --in-channels 1 --num-classes 10 -o m.h5 >/dev/null
    "$B/augment" --batch 16 --views 1 --epochs 2 --quiet d64.h5 | "$PY" -c "
import sys; sys.path.insert(0, '$(dirname "$KDT")'); import kdt
with kdt.Writer(sys.stdout.buffer) as w:
    for k, (meta, t) in enumerate(kdt.read_frames(sys.stdin.buffer)):
        if k < 6: w.write(meta, t)" > short.kdt
    run sh -c "'$B/distill-step' --method ce -m m.h5 -o out.h5 < short.kdt > /dev/null"
    assert_failure 1
    assert_output "distill-step: -: the stream ended at step 6 of the 8 its frames announce (epochs x batches): out.h5 is not written; out.h5.ckpt.h5 holds step 6"
    [ ! -e out.h5 ] && [ -s out.h5.ckpt.h5 ]
    # a length the user gives is the user's: a run stopped on purpose, to be resumed
    run sh -c "'$B/distill-step' --method ce -m m.h5 --epochs 2 -o out.h5 < short.kdt > /dev/null"
    assert_success
}

@test "stream: a closed reader ends augment quietly" {
    run sh -c "'$B/augment' --limit 40 --batch 4 --epochs 50 --quiet ds.h5 | head -c 100 > /dev/null"
    assert_success
}

@test "stream: a frame larger than the per-frame bound is refused before it is allocated, and inflating follows the data" {
    "$PY" -c "
import sys, struct, zlib; sys.path.insert(0, '$(dirname "$KDT")'); import kdt, numpy as np
big = kdt.encode_frame({}, {'x': np.zeros(16 << 20, np.float32)}, deflate=True)   # 64 MiB raw, 290 KB stored
open('big.kdt', 'wb').write(big); kdt.write_end(open('big.kdt', 'ab'), 1)
h = bytearray(big[:40]); struct.pack_into('<Q', h, 24, 3 << 30)                     # claims 3 GiB raw
h[32:36] = struct.pack('<I', zlib.crc32(big[40:], zlib.crc32(bytes(h[:32]))))
open('liar.kdt', 'wb').write(bytes(h) + big[40:])"
    [ "$(stat -c %s big.kdt)" -lt 400000 ]
    run "$B/tensor-info" big.kdt
    assert_success
    run env KDPIPE_MAX_FRAME_MB=32 "$B/tensor-info" big.kdt
    assert_failure 1
    assert_output "tensor-info: big.kdt: frame 0 at byte 0: a frame of 67108887 bytes exceeds the bound of 32 MB per frame (KDPIPE_MAX_FRAME_MB raises it)"
    run "$B/tensor-info" liar.kdt
    assert_failure 1
    assert_output "tensor-info: liar.kdt: frame 0 at byte 0: a frame of 3221225472 bytes exceeds the bound of 1024 MB per frame (KDPIPE_MAX_FRAME_MB raises it)"
    run env KDPIPE_MAX_FRAME_MB=4096 /usr/bin/time -f "%M KB" "$B/tensor-info" liar.kdt
    assert_failure 1
    assert_line --index 0 "tensor-info: liar.kdt: frame 0 at byte 0: deflated payload does not inflate to 3221225472 bytes"
    [ "${lines[2]% KB}" -lt 300000 ]   # the 64 MiB it really holds (plus the process), not 3 GiB
    run env KDPIPE_MAX_FRAME_MB=0 "$B/tensor-info" big.kdt
    assert_failure 1
    assert_output "tensor-info: big.kdt: KDPIPE_MAX_FRAME_MB='0' is not a number of MB in [1, 4096]"
}

# ign PROG ARGS...: runs PROG with SIGPIPE ignored, as some supervisors do
ign() {
    "$PY" -c 'import os, signal, sys
signal.signal(signal.SIGPIPE, signal.SIG_IGN)
os.execv(sys.argv[1], sys.argv[1:])' "$@"
}

@test "stream: augment and teacher-extract end alike when their reader goes: status 1, no message, with SIGPIPE ignored" {
    "$B/model-init" --arch resnet8x4 --in-channels 1 --num-classes 10 -o m.h5 >/dev/null
    ign "$B/augment" --limit 40 --batch 4 --epochs 50 --quiet ds.h5 2> a.err | head -c 100 > /dev/null || true
    s=("${PIPESTATUS[@]}")
    [ "${s[0]}" = 1 ] && [ ! -s a.err ]
    "$B/augment" --limit 40 --batch 4 --epochs 50 --quiet ds.h5 2> /dev/null \
        | ign "$B/teacher-extract" -m m.h5 2> t.err | head -c 100 > /dev/null || true
    s=("${PIPESTATUS[@]}")
    [ "${s[1]}" = 1 ] && [ ! -s t.err ]
}

@test "stream: augment - reads the dataset file from standard input, through a temporary it removes" {
    mkdir tmp
    "$B/augment" --limit 40 --batch 16 --quiet ds.h5 > a.kdt
    TMPDIR=$PWD/tmp "$B/augment" --limit 40 --batch 16 --quiet - < ds.h5 > b.kdt
    cmp a.kdt b.kdt
    cat ds.h5 | TMPDIR=$PWD/tmp "$B/augment" --limit 40 --batch 16 --quiet - > c.kdt
    cmp a.kdt c.kdt
    [ -z "$(ls -A tmp)" ]
    run sh -c "echo 'not a dataset' | TMPDIR=$PWD/tmp '$B/augment' --quiet - > /dev/null"
    assert_failure 1
    [ -z "$(ls -A tmp)" ]
}

@test "stream: a frame is held once, read (or inflated) straight into its tensors" {
    "$PY" -c "
import sys; sys.path.insert(0, '$(dirname "$KDT")'); import kdt, numpy as np
x = {'x': np.ones(16 << 20, np.float32)}   # 64 MiB
for name, d in (('plain', False), ('deflated', True)):
    with open(name + '.kdt', 'wb') as f:
        kdt.write_frame(f, {}, x, deflate=d); kdt.write_end(f, 1)"
    for s in plain deflated; do
        run /usr/bin/time -f "%M KB" "$B/tensor-info" $s.kdt
        assert_success
        kb="${lines[${#lines[@]}-1]% KB}"
        echo "$s: $kb KB"
        [ "$kb" -gt 65536 ] && [ "$kb" -lt 110000 ]   # the 64 MiB once (plus the process), not twice
    done
}

@test "stream: a frame reaches the next stage before its writer has the next one (every frame flushed)" {
    "$B/model-init" --arch resnet20 --in-channels 1 --head mlp:64:32 -o m.h5 >/dev/null
    "$B/augment" --limit 16 --batch 8 --views 2 --quiet ds.h5 > a.kdt
    # frame 0 alone, and then the pipe stays open: teacher-extract waits for
    # frame 1 while the reader must already have frame 0 whole
    "$PY" -c "
import sys; sys.path.insert(0, '$(dirname "$KDT")'); import kdt
meta, t = next(kdt.read_frames(open('a.kdt', 'rb')))
kdt.write_frame(sys.stdout.buffer, meta, t)" > f0.kdt
    { cat f0.kdt; sleep 6; } | "$B/teacher-extract" -m m.h5 --threads 1 --quiet 2>/dev/null \
        | timeout 5 "$PY" -c "
import sys; sys.path.insert(0, '$(dirname "$KDT")'); import kdt
meta, t = next(kdt.read_frames(sys.stdin.buffer))
print(meta['step'], sorted(k for k in t if k.startswith('t.')))" > got || true
    run cat got
    assert_output "0 ['t.emb0', 't.emb1', 't.feat0', 't.feat1']"
}
