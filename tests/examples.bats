#!/usr/bin/env bats
# The scripts in examples/ run as a user would run them.
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

EX="$BATS_TEST_DIRNAME/../examples"

setup() {
    cd "$BATS_TEST_TMPDIR"
    "$BATS_TEST_DIRNAME/../bin/dataset" --limit 64 --split test /usr/share/datasets/fashion-mnist -o d.h5 >/dev/null
}

@test "examples/python-filter.sh: a Python stage inside the pipeline" {
    run "$EX/python-filter.sh" d.h5 out
    assert_success
    assert_output --partial '"steps": 2'
    run "$BATS_TEST_DIRNAME/../bin/tensor-info" out/noisy.h5
    assert_success
}

@test "examples/noise_filter.py changes the views and nothing else" {
    "$BATS_TEST_DIRNAME/../bin/augment" --views 2 --batch 32 --quiet d.h5 > a.kdt
    "$EX/noise_filter.py" 0.5 < a.kdt > b.kdt
    run "$BATS_TEST_DIRNAME/../bin/tensor-info" --json b.kdt
    assert_success
    a=$("$BATS_TEST_DIRNAME/../bin/tensor-info" --json a.kdt | grep -E '"(index|label)"')
    b=$("$BATS_TEST_DIRNAME/../bin/tensor-info" --json b.kdt | grep -E '"(index|label)"')
    [ "$a" = "$b" ]
    ! cmp -s a.kdt b.kdt
}

@test "examples/inspect.sh" {
    run "$EX/inspect.sh" d.h5 out
    assert_success
    assert_output --partial "/images                  Dataset {64/Inf, 28, 28, 1}"
    assert_output --partial "dataset (64, 28, 28, 1)"
    [ -s out/views/frame0000-view1.png ]
}

@test "examples/resume.sh: the resumed run equals the uninterrupted one" {
    run "$EX/resume.sh" d.h5 out
    assert_success
    assert_output "resumed run equals the uninterrupted one: True"
}
