#!/usr/bin/env bats
# augment: dataset file -> stream of augmented views.
# Streams are inspected with tests/unit/test_aug --summary (one line per
# tensor: dtype, shape, min/max/mean; int tensors also their sum).
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

setup() {
    AUG="$BATS_TEST_DIRNAME/../bin/augment"
    SUM="$BATS_TEST_DIRNAME/unit/test_aug"
    FX="$BATS_TEST_DIRNAME/fixtures"
    FM="$FX/aug_fm.h5"    # 96 real Fashion-MNIST test images with labels
    RGB="$FX/aug_rgb.h5"  # 12 synthetic RGB 40x48 images, no labels
    T="$BATS_TEST_TMPDIR"
}

@test "--help and --version" {
    run "$AUG" --help
    assert_success
    assert_output --partial "Usage: augment"
    assert_output --partial "--policy"
    run "$AUG" --version
    assert_success
    assert_output --partial "augment (kdpipe)"
}

@test "usage errors exit 2 with a message" {
    run "$AUG"
    assert_failure 2
    assert_output --partial "missing DATASET.h5"
    run "$AUG" --policy fancy "$FM" -o "$T/x.kdt"
    assert_failure 2
    assert_output --partial "unknown policy 'fancy'"
    run "$AUG" --jitter-p 1.5 "$FM" -o "$T/x.kdt"
    assert_failure 2
    assert_output --partial "--jitter-p"
    run "$AUG" --crop-scale -0.1,1 "$FM" -o "$T/x.kdt"
    assert_failure 2
    assert_output --partial "crop scale"
    run "$AUG" --jitter 0.4,0.4,0.4,0.7 "$FM" -o "$T/x.kdt"
    assert_failure 2
    assert_output --partial "hue"
    run "$AUG" --jitter 0.4,0.4 "$FM" -o "$T/x.kdt"
    assert_failure 2
    run "$AUG" --views 0 "$FM" -o "$T/x.kdt"
    assert_failure 2
    run "$AUG" --size 0x3 "$FM" -o "$T/x.kdt"
    assert_failure 2
    run "$AUG" --policy crop-flip --size 40 "$FM" -o "$T/x.kdt"
    assert_failure 2
    assert_output --partial "crop size 40x40 is larger than the padded image 36x36"
    run "$AUG" --bogus "$FM"
    assert_failure 2
    [ ! -e "$T/x.kdt" ]
}

@test "bad inputs exit 1 with a clear message and leave no output" {
    run "$AUG" "$T/missing.h5" -o "$T/x.kdt"
    assert_failure 1
    assert_output --partial "missing.h5"
    echo "not hdf5" > "$T/text.h5"
    run "$AUG" "$T/text.h5" -o "$T/x.kdt"
    assert_failure 1
    assert_output --partial "text.h5"
    run "$AUG" "$FX/aug_badkind.h5" -o "$T/x.kdt"
    assert_failure 1
    assert_output --partial "features"
    run "$AUG" "$FX/aug_badshape.h5" -o "$T/x.kdt"
    assert_failure 1
    assert_output --partial "images"
    run "$AUG" --mean 0.5 "$FM" -o "$T/x.kdt"
    assert_success
    run "$AUG" --no-normalize --policy none --limit 1 --batch 1 "$FM" -o "$T/x.kdt"
    assert_success
    rm -f "$T/x.kdt"
    run "$AUG" --batch 200 --drop-last "$FM" -o "$T/x.kdt"
    assert_failure 1
    assert_output --partial "larger than the 96 images"
    run "$AUG" "$RGB" -o "$T/nodir/x.kdt"
    assert_failure 1
    [ ! -e "$T/x.kdt" ]
    [ -z "$(ls -A "$T" | grep -v text.h5)" ]
}

@test "mocov2 round trip on real Fashion-MNIST images" {
    run "$AUG" --batch 32 --seed 3 "$FM" -o "$T/v.kdt"
    assert_success
    assert_output --partial '"frames": 3'
    assert_output --partial '"views": 192'
    run "$SUM" --summary "$T/v.kdt"
    assert_success
    assert_line "frames 3"
    assert_line --partial "frame 0 epoch=0 step=0 batch=0 batches=3 epochs=1 seed=3 policy=mocov2"
    assert_line --partial "frame 2 epoch=0 step=2 batch=2"
    assert_line --partial "  view0 f32 [32,1,28,28]"
    assert_line --partial "  view1 f32 [32,1,28,28]"
    assert_line --partial "  label i32 [32] min 0.0000 max 9.0000"
    # every image exactly once: the index sums to 0+1+...+95
    total=$(echo "$output" | awk '/^  index/ { for (i = 1; i <= NF; i++) if ($i == "sum") s += $(i + 1) } END { print s }')
    [ "$total" = 4560 ]
    # normalised with the dataset's mean/std: black pixels at -mean/std
    echo "$output" | grep -q "view0 f32 \[32,1,28,28\] min -0.80"
    # two views of the same image differ
    ! echo "$output" | awk '/view0/ {a = $NF} /view1/ {b = $NF} END {exit !(a == b)}' || false
}

@test "the same seed gives the same bytes whatever --threads is" {
    "$AUG" --batch 20 --seed 7 --threads 1 "$FM" -o "$T/a.kdt" > /dev/null
    "$AUG" --batch 20 --seed 7 --threads 2 "$FM" -o "$T/b.kdt" > /dev/null
    "$AUG" --batch 20 --seed 7 --threads 5 "$FM" -o "$T/c.kdt" > /dev/null
    "$AUG" --batch 20 --seed 8 --threads 2 "$FM" -o "$T/d.kdt" > /dev/null
    cmp "$T/a.kdt" "$T/b.kdt"
    cmp "$T/a.kdt" "$T/c.kdt"
    ! cmp -s "$T/a.kdt" "$T/d.kdt" || false
    # to stdout as well, and reading images from the file one at a time
    "$AUG" --batch 20 --seed 7 --threads 2 "$FM" | cmp - "$T/a.kdt"
    "$AUG" --batch 20 --seed 7 --max-memory 0 "$FM" -o "$T/f.kdt" > /dev/null
    cmp "$T/a.kdt" "$T/f.kdt"
}

@test "view 0 of an image does not depend on --views or --batch" {
    "$AUG" --views 1 --batch 96 --seed 5 "$FM" -o "$T/v1.kdt" > /dev/null
    "$AUG" --views 3 --batch 96 --seed 5 "$FM" -o "$T/v3.kdt" > /dev/null
    a=$("$SUM" --summary "$T/v1.kdt" | grep "^  view0")
    b=$("$SUM" --summary "$T/v3.kdt" | grep "^  view0")
    [ -n "$a" ] && [ "$a" = "$b" ]
    "$AUG" --views 1 --batch 7 --seed 5 --no-shuffle "$FM" -o "$T/b7.kdt" > /dev/null
    "$AUG" --views 1 --batch 96 --seed 5 --no-shuffle "$FM" -o "$T/b96.kdt" > /dev/null
    m7=$("$SUM" --summary "$T/b7.kdt" | awk '/^  view0/ { split($3, d, /[][,]/); s += $NF * d[2] } END { printf "%.3f", s / 96 }')
    m96=$("$SUM" --summary "$T/b96.kdt" | awk '/^  view0/ { printf "%.3f", $NF }')
    [ "$m7" = "$m96" ]
}

@test "epochs: a new permutation each epoch; --start-epoch resumes the same stream" {
    "$AUG" --batch 96 --epochs 2 --seed 1 "$FM" -o "$T/e2.kdt" > /dev/null
    run "$SUM" --summary "$T/e2.kdt"
    assert_line --partial "frame 1 epoch=1 step=1 batch=0 batches=1"
    i0=$(echo "$output" | grep "^  index" | sed -n 1p | sed 's/.*values//')
    i1=$(echo "$output" | grep "^  index" | sed -n 2p | sed 's/.*values//')
    [ "$i0" != "$i1" ]
    "$AUG" --batch 96 --epochs 1 --start-epoch 1 --seed 1 "$FM" -o "$T/e1.kdt" > /dev/null
    n=$(stat -c %s "$T/e1.kdt")   # the same frames; the end markers count 2 and 1 frames
    head -c -51 "$T/e2.kdt" | tail -c $((n - 51)) | cmp - <(head -c -51 "$T/e1.kdt")
}

@test "--no-shuffle, --limit, --drop-last, eval policy" {
    run "$AUG" --policy eval --no-shuffle --limit 50 --batch 16 --drop-last "$FM" -o "$T/e.kdt"
    assert_success
    assert_output --partial '"frames": 3'
    run "$SUM" --summary "$T/e.kdt"
    assert_line --partial "  index i64 [16] min 0.0000 max 15.0000 mean 7.5000 sum 120 values 0 1 2 3 4 5 6 7"
    refute_line --partial "view1"
    # eval has no randomness: another seed, same pixels (only the seed
    # metadata differs)
    "$AUG" --policy eval --no-shuffle --limit 50 --batch 16 --drop-last --seed 99 "$FM" -o "$T/e2.kdt"
    diff <("$SUM" --summary "$T/e.kdt" | sed 's/ seed=[0-9]*//') <("$SUM" --summary "$T/e2.kdt" | sed 's/ seed=[0-9]*//')
}

@test "RGB images without labels; simclr at another size; crop-flip; --channels" {
    run "$AUG" --policy simclr --size 32 --views 3 --batch 5 "$RGB" -o "$T/r.kdt"
    assert_success
    run "$SUM" --summary "$T/r.kdt"
    assert_line "frames 3"
    assert_line --partial "  view2 f32 [5,3,32,32]"
    assert_line --partial "  view0 f32 [2,3,32,32]"
    refute_line --partial "label"
    run "$AUG" --policy crop-flip --views 1 --batch 96 "$FM" -o "$T/c.kdt"
    assert_success
    run "$SUM" --summary "$T/c.kdt"
    assert_line --partial "  view0 f32 [96,1,28,28]"
    run "$AUG" --channels 3 --size 24x20 --batch 96 "$FM" -o "$T/g.kdt"
    assert_success
    run "$SUM" --summary "$T/g.kdt"
    assert_line --partial "  view0 f32 [96,3,24,20]"
    run "$AUG" --channels 1 --policy none --no-normalize --batch 12 "$RGB" -o "$T/n.kdt"
    assert_success
    run "$SUM" --summary "$T/n.kdt"
    assert_line --partial "  view0 f32 [12,1,40,48] min 0.0"
}

@test "deflated frames carry the same tensors" {
    "$AUG" --batch 32 "$FM" -o "$T/p.kdt" > /dev/null
    "$AUG" --batch 32 --deflate "$FM" -o "$T/z.kdt" > /dev/null
    [ "$(stat -c %s "$T/z.kdt")" -lt "$(stat -c %s "$T/p.kdt")" ]
    diff <("$SUM" --summary "$T/p.kdt") <("$SUM" --summary "$T/z.kdt")
}

@test "--dump-png writes grids of the first batch" {
    run "$AUG" --views 2 --batch 8 --dump-png "$T/png" "$FM" -o "$T/v.kdt"
    assert_success
    for f in views.png view0.png view1.png; do
        [ -s "$T/png/$f" ]
        [ "$(head -c 8 "$T/png/$f" | od -An -tx1 | tr -d ' ')" = 89504e470d0a1a0a ]
    done
    run "$AUG" --dump-png "$T/v.kdt" "$FM" -o "$T/w.kdt"
    assert_failure 1
    assert_output --partial "--dump-png"
}

@test "a closed pipe ends augment quietly" {
    run bash -c "'$AUG' --epochs 200 --batch 8 '$FM' 2> '$T/err' | head -c 1000 > /dev/null; echo \${PIPESTATUS[0]}"
    [ "$output" = 141 ] || [ "$output" = 0 ]
    [ ! -s "$T/err" ]
    # with SIGPIPE ignored (as under some supervisors) it exits 1 (the stream
    # was not delivered), quietly, as teacher-extract does
    run bash -c "trap '' PIPE; '$AUG' --epochs 200 --batch 8 '$FM' 2> '$T/err' | head -c 1000 > /dev/null; echo \${PIPESTATUS[0]}"
    [ "$output" = 1 ]
    [ ! -s "$T/err" ]
}

@test "refuses to write a binary stream to a terminal; -o /dev/null stays a device" {
    if [ -e /dev/tty ] && script -qc true /dev/null > /dev/null 2>&1; then
        run script -qc "'$AUG' '$FM'" /dev/null
        assert_output --partial "terminal"
    fi
    "$AUG" --batch 32 "$FM" -o /dev/null
    [ -c /dev/null ]
}

@test "every frame carries the run's length: epochs (with --start-epoch: the total) and batches" {
    run "$AUG" --batch 40 --epochs 2 --seed 1 "$FM" -o "$T/e.kdt"
    assert_success
    run "$SUM" --summary "$T/e.kdt"
    assert_success
    assert_line "frames 6"
    [ "$(echo "$output" | grep -c '^frame .* batches=3 epochs=2 ')" = 6 ]
    assert_line --partial "frame 5 epoch=1 step=5 batch=2 batches=3 epochs=2"
    run "$AUG" --batch 40 --epochs 1 --start-epoch 1 --seed 1 "$FM" -o "$T/r.kdt"
    assert_success
    run "$SUM" --summary "$T/r.kdt"
    assert_line --partial "frame 0 epoch=1 step=3 batch=0 batches=3 epochs=2"
}

@test "--progress: a readable progress line on a non-terminal stderr; none without it" {
    "$AUG" --progress --batch 16 --epochs 2 "$FM" -o "$T/p.kdt" 2>"$T/err" >/dev/null
    grep -q "augment: epoch 2/2 batch 6/6  192/192 100%" "$T/err"
    grep -q "images/s  0s left" "$T/err"
    "$AUG" --batch 16 "$FM" -o "$T/p.kdt" 2>"$T/err" >/dev/null
    [ ! -s "$T/err" ]
    "$AUG" --progress --quiet --batch 16 "$FM" -o "$T/p.kdt" 2>"$T/err" >/dev/null
    [ ! -s "$T/err" ]
}
