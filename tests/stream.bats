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
kdt.write_frame(sys.stdout.buffer, {'epoch': '0', 'step': '1'}, t, deflate=True)"
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
    head -c $((size - 3)) t.kdt > cut.kdt
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

@test "stream: empty input is an empty stream; a closed reader ends augment quietly" {
    run "$B/tensor-info" < /dev/null
    assert_success
    assert_output "0 frames"
    run sh -c "'$B/augment' --limit 40 --batch 4 --epochs 50 --quiet ds.h5 | head -c 100 > /dev/null"
    assert_success
}
