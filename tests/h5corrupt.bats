#!/usr/bin/env bats
# Corrupt HDF5 files: a flipped byte anywhere in a dataset or model file must
# give either the same result (the byte was unused) or a clear error, exit 1:
# never a crash, a hang, or silently different numbers (chunk checksums and
# the 1.8 format's header checksums, kdpipe-h5(5)).
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

B="$BATS_TEST_DIRNAME/../bin"
PY=/usr/bin/python3

setup() { cd "$BATS_TEST_TMPDIR"; }

# flips FILE N PROGRAM ARGS...: runs PROGRAM ARGS x.h5 on N copies of FILE,
# each with one byte flipped (offsets spread over the file), and prints
# "same err bad" counts; the reference run is on an intact copy named x.h5.
flips() {
    "$PY" - "$@" <<'PY'
import re, shutil, subprocess, sys
src, n, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
data = open(src, "rb").read()
strip = lambda o: re.sub(rb'"(seconds|images_per_s)": [0-9.e+-]+', b"", o)
shutil.copy(src, "x.h5")
ref = subprocess.run(cmd + ["x.h5"], capture_output=True)
assert ref.returncode == 0, ref.stderr
same = err = bad = 0
prog = cmd[0].rsplit("/", 1)[-1]
for i in range(n):
    off = (i * 104729 + 17) % len(data)
    b = bytearray(data)
    b[off] ^= 0x5A
    open("x.h5", "wb").write(b)
    p = subprocess.run(["timeout", "20"] + cmd + ["x.h5"], capture_output=True)
    if p.returncode == 0 and strip(p.stdout) == strip(ref.stdout):
        same += 1
    elif p.returncode == 1 and p.stderr.decode(errors="replace").startswith(prog + ": "):
        err += 1
    else:
        bad += 1
        print("byte %d: exit %d: %s" % (off, p.returncode, p.stderr[:200]), file=sys.stderr)
print(same, err, bad)
PY
}

@test "h5 corruption: flipped bytes in a dataset file are caught or harmless" {
    "$B/dataset" /usr/share/datasets/fashion-mnist --split test --limit 100 -o d.h5 > /dev/null
    run flips d.h5 80 "$B/linprobe" --no-linear --knn 3 d.h5
    assert_success
    echo "$output"
    [ "$(echo "$output" | tail -1 | cut -d' ' -f3)" = 0 ]
    [ "$(echo "$output" | tail -1 | cut -d' ' -f2)" -gt 40 ]
}

@test "h5 corruption: flipped bytes in a model file are caught or harmless" {
    "$B/model-init" --arch resnet8x4 --in-channels 1 --num-classes 10 -o m.h5 > /dev/null
    run flips m.h5 60 "$B/tensor-info"
    assert_success
    echo "$output"
    [ "$(echo "$output" | tail -1 | cut -d' ' -f3)" = 0 ]
    [ "$(echo "$output" | tail -1 | cut -d' ' -f2)" -gt 30 ]
}
