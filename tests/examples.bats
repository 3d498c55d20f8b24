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
    ! cmp -s a.kdt b.kdt || false
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

@test "examples/noisy-teacher.sh: a user's stage between teacher-extract and distill-step" {
    run "$EX/noisy-teacher.sh" d.h5 out 0.05
    assert_success
    assert_output --partial '"steps": 2'
    run "$BATS_TEST_DIRNAME/../bin/tensor-info" out/student.h5
    assert_success
}

@test "examples/teacher_noise.py perturbs the teacher's embeddings, keeps them unit-norm, passes the rest" {
    kd="$BATS_TEST_DIRNAME/../bin"
    "$kd/model-init" --arch resnet20 --in-channels 1 --head mlp:64:16 -o t.h5 > /dev/null
    "$kd/augment" --policy mocov2 --views 2 --batch 32 --quiet d.h5 | "$kd/teacher-extract" -m t.h5 --quiet > a.kdt
    "$EX/teacher_noise.py" 0.1 < a.kdt > b.kdt
    run /usr/bin/python3 - "$EX" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np, kdt
fa = list(kdt.read_frames(open("a.kdt", "rb")))
fb = list(kdt.read_frames(open("b.kdt", "rb")))
assert len(fa) == len(fb) == 2
for (ma, ta), (mb, tb) in zip(fa, fb):
    assert set(ta) == set(tb)
    for k in ta:
        same = np.array_equal(ta[k], tb[k])
        assert same == (k not in ("t.emb0", "t.emb1")), k
    for k in ("t.emb0", "t.emb1"):
        assert np.allclose(np.linalg.norm(tb[k], axis=1), 1, atol=1e-5)
        assert 0.5 < (ta[k] * tb[k]).sum(1).mean() < 0.9999
print("ok")
PY
    assert_success
    assert_output "ok"
    # a stream without the teacher: a clear error
    "$kd/augment" --views 2 --batch 32 --quiet d.h5 > c.kdt
    run "$EX/teacher_noise.py" 0.1 < c.kdt
    assert_failure
    assert_output --partial "teacher_noise.py: frame 0: no t.emb0 (put teacher-extract before me)"
}
