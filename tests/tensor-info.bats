#!/usr/bin/env bats
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

B="$BATS_TEST_DIRNAME/../bin"
TI="$B/tensor-info"
PY=/usr/bin/python3

setup() {
    cd "$BATS_TEST_TMPDIR"
    "$B/dataset" --limit 50 --split test /usr/share/datasets/fashion-mnist -o ds.h5 >/dev/null
}

@test "tensor-info --help, --version, usage errors" {
    run "$TI" --help
    assert_success
    assert_output --partial "Usage: tensor-info"
    run "$TI" --version
    assert_success
    run "$TI" a b
    assert_failure 2
    run "$TI" --png-count 0 ds.h5
    assert_failure 2
    run "$TI" --nope
    assert_failure 2
}

@test "tensor-info: a dataset file, table and JSON" {
    run "$TI" ds.h5
    assert_success
    assert_output --partial "kdpipe dataset file, format 1"
    assert_output --partial "images                   u8   [50,28,28,1]"
    assert_output --partial '@classes = 10: "T-shirt/top"'
    run "$TI" --json ds.h5
    assert_success
    assert_line --index 1 --regexp '^\{"name": "labels", "dtype": "i32", "shape": \[50\], "min": 0, "mean": [0-9.]+, "max": 9\}$'
    # the statistics agree with NumPy's
    py=$("$PY" -c "import h5py; x=h5py.File('ds.h5')['images'][:]; print(x.min(), round(float(x.mean()),3), x.max())")
    js=$("$TI" --json ds.h5 | head -1 | "$PY" -c "import json,sys; d=json.load(sys.stdin); print(int(d['min']), round(d['mean'],3), int(d['max']))")
    [ "$py" = "$js" ]
}

@test "tensor-info: a stream from augment, and PNG grids of images and views" {
    "$B/augment" --limit 50 --batch 25 --quiet ds.h5 > s.kdt
    run "$TI" --png pngs s.kdt
    assert_success
    assert_output --partial "frame 1: epoch=0 step=1"
    assert_output --partial "view1                    f32  [25,1,28,28]"
    assert_output --partial "2 frames"
    run "$TI" --png pngs ds.h5
    assert_success
    for f in pngs/frame0000-view0.png pngs/frame0001-view1.png pngs/images.png; do
        run "$PY" -c "import sys; b=open('$f','rb').read(24); print(b[:8]==b'\x89PNG\r\n\x1a\n', int.from_bytes(b[16:20],'big')>0)"
        assert_output "True True"
    done
    # stdin
    run sh -c "'$TI' - < s.kdt"
    assert_success
    assert_output --partial "2 frames"
}

@test "tensor-info: bad HDF5 inputs" {
    run "$TI" missing.h5
    assert_failure 1
    assert_output --partial "missing.h5: No such file"
    "$PY" -c "import h5py; f=h5py.File('plain.h5','w'); f['x']=[1,2]"
    run "$TI" plain.h5
    assert_failure 1
    assert_output --partial "plain.h5: not a kdpipe file (no kdpipe_format attribute)"
    cp ds.h5 newer.h5
    "$PY" -c "import h5py; h5py.File('newer.h5','a').attrs['kdpipe_format']=7"
    run "$TI" newer.h5
    assert_failure 1
    assert_output --partial "kdpipe_format 7 is not supported"
    head -c 4000 ds.h5 > trunc.h5
    run "$TI" trunc.h5
    assert_failure 1
    assert_output --partial "trunc.h5"
    echo "hello" > text.h5
    run "$TI" text.h5
    assert_failure 1
    assert_output --partial "text.h5: frame 0 at byte 0: truncated frame header"
}

@test "tensor-info: a dataset file truncated anywhere is an error, never a crash" {
    size=$(stat -c %s ds.h5)
    # (an empty file is an empty stream: 0 frames, success)
    for cut in 1 8 100 512 1024 2048 4096 $((size / 3)) $((size / 2)) $((size - 100)) $((size - 1)); do
        head -c $cut ds.h5 > cut.h5
        run "$TI" cut.h5
        [ "$status" -eq 1 ] || { echo "cut at $cut: exit $status: $output"; false; }
        [[ "$output" == *"cut.h5"* ]]
    done
}

kdt_frame() { # FILE NAME-BYTES(python literal) VALUES(python expr): one frame, tensor named by raw bytes
    "$PY" -c "
import sys, struct, zlib, numpy as np; sys.path.insert(0, '$BATS_TEST_DIRNAME/../examples'); import kdt
name = $2
b = bytearray(kdt.encode_frame({}, {'x' * len(name): np.array($3, np.float32)}))
i = b.index(b'x' * len(name), 40); b[i:i + len(name)] = name
struct.pack_into('<I', b, 32, zlib.crc32(bytes(b[40:]), zlib.crc32(bytes(b[:32]))))
f = open('$1', 'wb'); f.write(b); kdt.write_end(f, 1)"
}

@test "tensor-info: an all-NaN or all-Inf tensor is flagged NON-FINITE, not shown as empty" {
    kdt_frame nan.kdt "b'allnan'" "[np.nan, np.inf, -np.inf]"
    run "$TI" nan.kdt
    assert_success
    assert_line --index 1 --regexp "^  allnan +f32  \[3\] +\(no finite value\)  NON-FINITE VALUES$"
    run "$TI" --json nan.kdt
    assert_success
    assert_output --partial '"min": null, "mean": null, "max": null, "nonfinite": 3}'
}

@test "tensor-info: names that are not UTF-8, hold a NUL or a terminal escape are refused" {
    kdt_frame nul.kdt "b'view0\\x00xx'" "[1]"
    run "$TI" nul.kdt
    assert_failure 1
    assert_output "tensor-info: nul.kdt: frame 0 at byte 0: tensor 0: the name is not UTF-8 without NUL and control characters"
    kdt_frame esc.kdt "b'\\x1b[31mred'" "[1]"
    run "$TI" --json esc.kdt
    assert_failure 1
    assert_output --partial "tensor 0: the name is not UTF-8 without NUL and control characters"
    kdt_frame bad.kdt "b'caf\\xe9'" "[1]"
    run "$TI" --json bad.kdt
    assert_failure 1
    assert_output --partial "tensor 0: the name is not UTF-8 without NUL and control characters"
    kdt_frame ok.kdt "'café'.encode()" "[1]"
    run "$TI" --json ok.kdt
    assert_success
    assert_output --partial '"name": "café"'
}

@test "tensor-info: output that cannot be written is exit 1 with a message" {
    run sh -c "'$TI' ds.h5 > /dev/full"
    assert_failure 1
    assert_output "tensor-info: stdout: write failed (No space left on device)"
}
