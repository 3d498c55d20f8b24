#!/usr/bin/env bats
# The whole self-supervised pipeline of `make demo`, shortened: a few hundred
# images, one epoch.  Every stage runs for real through pipes and HDF5 files.
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

@test "demo pipeline: dataset | augment | distill-step | teacher-extract | linprobe, table and plot" {
    cd "$BATS_TEST_DIRNAME/.."
    out="$BATS_TEST_TMPDIR/demo"
    run make --no-print-directory -f pipelines/ssl-fmnist.mk OUT="$out" LIMIT=384 TEST_LIMIT=256 EPOCHS=1 \
        BATCH=64 QUEUE=256 VAL_EVERY=3 SUP_EPOCHS=1 SUP_BATCH=64 BANK_LIMIT=384 MOCO_M=0.99
    assert_success
    run cat "$out/results.md"
    assert_line --index 0 "| model | method | linear top-1 | kNN top-1 | train wall time |"
    assert_line --partial "| resnet20 random | none (random init) | 0."
    assert_line --partial "| resnet20 moco | MoCo v2 (self-supervised) | 0."
    assert_line --partial "| resnet20 supervised | cross-entropy (labels) | 0."
    run /usr/bin/python3 -c "b=open('$out/curves.png','rb').read(); print(b[:4]==b'\x89PNG', len(b) > 5000)"
    assert_output "True True"
    # intermediates are HDF5 a user can open
    run /usr/bin/python3 -c "import h5py; f=h5py.File('$out/moco-ftest.h5'); print(f.attrs['kdpipe_kind'], f['features'].shape)"
    assert_output "features (256, 64)"
    # nothing is rebuilt when nothing changed
    run make --no-print-directory -q -f pipelines/ssl-fmnist.mk OUT="$out" LIMIT=384 TEST_LIMIT=256
    assert_success
}
