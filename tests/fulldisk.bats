#!/usr/bin/env bats
# Every HDF5 writer on a full disk (a 256 KiB tmpfs): the message, exit 1,
# no crash from HDF5's exit-time cleanup, no file and no temporary left.
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

B="$BATS_TEST_DIRNAME/../bin"
FM=/usr/share/datasets/fashion-mnist

setup_file() {
    local T="$BATS_FILE_TMPDIR"
    "$B/dataset" --limit 200 "$FM" -o "$T/tr.h5" >/dev/null
    "$B/dataset" --limit 100 --split test "$FM" -o "$T/te.h5" >/dev/null
    "$B/model-init" --arch resnet20 --in-channels 1 --num-classes 10 -o "$T/r20.h5" >/dev/null
    "$B/augment" --policy crop-flip --views 1 --batch 16 --seed 5 --quiet "$T/tr.h5" -o "$T/s.kdt"
}

setup() {
    [ "$(id -u)" = 0 ] || skip "needs root for tmpfs"
    T="$BATS_FILE_TMPDIR"
    FULL="$BATS_TEST_TMPDIR/full"
    mkdir -p "$FULL"
    mount -t tmpfs -o size=256k tmpfs "$FULL"
}

teardown() {
    mountpoint -q "$FULL" 2>/dev/null && umount "$FULL" || true
}

full_disk_refused() { # after `run`: exit 1 (not a signal), a message, nothing left on the tmpfs
    assert_failure 1
    assert_output --partial "$FULL/out.h5"
    [ -z "$(ls -A "$FULL")" ]
}

@test "model-init on a full disk: exit 1, no file" {
    run "$B/model-init" --arch resnet18 -o "$FULL/out.h5"
    full_disk_refused
    assert_output --partial "(disk full?)"
}

@test "dataset on a full disk: exit 1, no file" {
    run "$B/dataset" --limit 2000 "$FM" -o "$FULL/out.h5"
    full_disk_refused
}

@test "teacher-extract --features on a full disk: exit 1, no file" {
    # 2048 x 64 features plus the labels do not fit in 256 KiB (the dataset does)
    "$B/dataset" --limit 2048 "$FM" -o "$T/big.h5" >/dev/null
    run "$B/teacher-extract" -m "$T/r20.h5" --features "$T/big.h5" -o "$FULL/out.h5"
    full_disk_refused
}

@test "linprobe --save on a full disk: exit 1, no file" {
    # the classifier alone fits; the padding file leaves less than its size
    head -c 240k /dev/zero > "$FULL/pad" 2>/dev/null || true
    run "$B/linprobe" --epochs 1 --save "$FULL/out.h5" "$T/tr.h5" "$T/te.h5"
    rm -f "$FULL/pad"
    full_disk_refused
}

@test "distill-step -o on a full disk: exit 1, no file" {
    run sh -c "'$B/distill-step' --method ce -m '$T/r20.h5' -o '$FULL/out.h5' < '$T/s.kdt'"
    full_disk_refused
}
