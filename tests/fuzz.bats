#!/usr/bin/env bats
# The fuzzing harnesses of tests/fuzz/ (README.md there), built with the
# ordinary compiler as replay drivers (build/replay/NAME): every seed of
# tests/fuzz/corpus/NAME and every crash input of tests/fuzz/regress/NAME
# goes through its reader once.  A crash, a sanitizer report (make asan) or
# an exit() inside a reader fails the test.
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

ROOT="$BATS_TEST_DIRNAME/.."
FZ="$BATS_TEST_DIRNAME/fuzz"
R="$ROOT/build/replay"

# replay NAME DIR...: every file of the directories that exist, counted
replay() {
    local name=$1 n=0 dirs=() d
    shift
    for d in "$@"; do
        [ -d "$d" ] || continue
        dirs+=("$d")
        n=$((n + $(find "$d" -maxdepth 1 -type f ! -name '.*' | wc -l)))
    done
    run "$R/$name" "${dirs[@]}"
    assert_success
    assert_line "$R/$name: $n inputs"
    [ "$n" -gt 0 ]
}

@test "fuzz: every harness has a replay driver and seeds" {
    for src in "$FZ"/fuzz_*.c; do
        name=$(basename "$src" .c)
        name=${name#fuzz_}
        [ -x "$R/$name" ]
        [ "$name" = model ] || [ -n "$(ls "$FZ/corpus/$name")" ]
    done
}

@test "fuzz: the committed seeds are what make_corpus writes (HDF5 aside: timestamps)" {
    "$R/make_corpus" "$BATS_TEST_TMPDIR/gen"
    for f in $(cd "$FZ/corpus" && find . -type f); do
        case $f in ./dataset/*) continue ;; esac
        cmp "$FZ/corpus/$f" "$BATS_TEST_TMPDIR/gen/$f"
    done
}

@test "fuzz: stream, frame and frame_z seeds and regression inputs replay" {
    for n in stream frame frame_z; do replay $n "$FZ/corpus/$n" "$FZ/regress/$n"; done
}

@test "fuzz: idx, cifar and png seeds and regression inputs replay" {
    for n in idx cifar png; do replay $n "$FZ/corpus/$n" "$FZ/regress/$n"; done
}

@test "fuzz: dataset and model (HDF5) seeds and regression inputs replay" {
    "$R/make_corpus" "$BATS_TEST_TMPDIR/gen"
    replay dataset "$FZ/corpus/dataset" "$FZ/regress/dataset"
    replay model "$BATS_TEST_TMPDIR/gen/model" "$FZ/regress/model"
}

@test "fuzz: the seeds are accepted by their readers (the harnesses reach past the first check)" {
    "$R/make_corpus" "$BATS_TEST_TMPDIR/gen"
    export KD_FUZZ_VERBOSE=1
    for n in stream frame frame_z idx cifar png dataset coco model; do
        run "$R/$n" "$BATS_TEST_TMPDIR/gen/$n"
        assert_success
        refute_line --regexp '^[a-z ]+: [^o]'
        assert_line --regexp '^[a-z ]+: ok$'
    done
}

@test "fuzz: coco seeds and regression inputs replay" {
    replay coco "$FZ/corpus/coco" "$FZ/regress/coco"
}

@test "fuzz: opts runs each program's option loop and comes back from --help and usage errors" {
    replay opts "$FZ/corpus/opts" "$FZ/regress/opts"
    # tensor-info (selector 10) --help: the help on stdout, then the next input
    printf '\n--help' > "$BATS_TEST_TMPDIR/help"
    printf '\n--no-such-option' > "$BATS_TEST_TMPDIR/usage"
    printf '\n--threads\n0' > "$BATS_TEST_TMPDIR/threads"
    run "$R/opts" "$BATS_TEST_TMPDIR/help" "$BATS_TEST_TMPDIR/usage" "$BATS_TEST_TMPDIR/threads"
    assert_success
    assert_line --partial "Usage: tensor-info"
    assert_line "tensor-info: unrecognized option '--no-such-option'"
    assert_line --partial "tensor-info: --threads"
    assert_line "$R/opts: 3 inputs"
}

@test "fuzz: a chunk record claiming 4 GiB, or 1 byte under a checksum, is refused before HDF5 reads it" {
    "$R/make_corpus" "$BATS_TEST_TMPDIR/gen"
    mkdir "$BATS_TEST_TMPDIR/bad"
    # the first v1 B-tree node of raw-data chunks: its first record's size
    /usr/bin/python3 - "$BATS_TEST_TMPDIR/gen/model/resnet8x4" "$BATS_TEST_TMPDIR/bad/model" <<'PY'
import sys
d = bytearray(open(sys.argv[1], 'rb').read())
i = d.find(b'TREE\x01')
assert i > 0
d[i + 24:i + 28] = b'\xff\xff\xff\xff'
open(sys.argv[2], 'wb').write(d)
d[i + 24:i + 28] = b'\x01\x00\x00\x00'  # shorter than its Fletcher-32 checksum
open(sys.argv[2] + '-1', 'wb').write(d)
PY
    KD_FUZZ_VERBOSE=1 run "$R/model" "$BATS_TEST_TMPDIR/bad/model" "$BATS_TEST_TMPDIR/bad/model-1"
    assert_line "$R/model: 2 inputs"
    [ "$(grep -c 'chunk records are inconsistent' <<< "$output")" = 2 ]
    assert_success
    assert_line --regexp "^model: .*/m.h5: dataset '[^']+': its chunk records are inconsistent with the file \(corrupt file\)$"
    KD_FUZZ_VERBOSE=1 run "$R/dataset" "$FZ/regress/dataset/chunk-size-4g"
    assert_success
    assert_line --regexp "^rows: .*/d.h5: dataset 'images': its chunk records are inconsistent with the file \(corrupt file\)$"
}

@test "fuzz: a PNG header claiming more pixels than its file can hold is refused before decoding" {
    # the gray seed's IHDR made 16000x16000 (the harness fixes the CRC)
    /usr/bin/python3 - "$FZ/corpus/png/gray" "$BATS_TEST_TMPDIR/big" <<'PY'
import sys
d = bytearray(open(sys.argv[1], 'rb').read())
assert d[13:17] == b'IHDR'
d[17:25] = (16000).to_bytes(4, 'big') * 2
open(sys.argv[2], 'wb').write(d)
PY
    KD_FUZZ_VERBOSE=1 run "$R/png" "$BATS_TEST_TMPDIR/big" "$FZ/regress/png/header-claims-240g"
    assert_success
    assert_line --regexp "^png: .*/x.png: a PNG of 16000x16000 pixels cannot be held in a file of 79 bytes \(corrupt header\)$"
    assert_line --regexp "^png: .*/x.png: a PNG of 327680x262144 pixels is larger than a dataset's images may be \(16384 a side\)$"
}
