#!/usr/bin/env bats
# Outputs of every program: an HDF5 output on something that is not a
# regular file is refused before any work; an output that cannot be created
# is found at the start; hidden temporaries never stay behind, whatever ends
# the program (an error, a usage error, SIGINT, SIGTERM, SIGHUP, SIGXFSZ).
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

B="$BATS_TEST_DIRNAME/../bin"
PY=/usr/bin/python3

setup() {
    cd "$BATS_TEST_TMPDIR"
    "$B/dataset" --limit 64 --split test /usr/share/datasets/fashion-mnist -o d.h5 >/dev/null
    "$B/model-init" --arch resnet8x4 --in-channels 1 --num-classes 10 -o m.h5 >/dev/null
}

no_tmp() { # no hidden temporary left in the current directory
    local left
    left=$(ls -A | grep '\.tmp\.' || true)
    [ -z "$left" ] || { echo "left behind: $left"; return 1; }
}

# dfl PROG ARGS... &: runs PROG as this background job (exec: $! is its pid)
# with SIGINT, SIGTERM and SIGHUP at their default action (a shell starts
# background jobs with SIGINT ignored), and at most 200 MB written.
dfl() {
    ulimit -f 200000
    exec "$PY" -c 'import os, signal, sys
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP): signal.signal(s, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])' "$@"
}

@test "outputs: every HDF5 writer refuses a FIFO, a directory or a device, before any work" {
    mkfifo fifo
    mkdir dir
    ln -s /dev/null null
    "$B/augment" --batch 16 --views 1 --quiet d.h5 > s.kdt
    for t in fifo dir null; do
        case $t in fifo) what="a FIFO" ;; dir) what="a directory" ;; null) what="a device or socket" ;; esac
        msg="$t: not a regular file ($what): this output is written beside it and renamed over it; give a file name"
        run "$B/model-init" --arch resnet8x4 --in-channels 1 --num-classes 10 -o $t
        assert_failure 1
        assert_output "model-init: $msg"
        run "$B/dataset" --limit 64 --split test /usr/share/datasets/fashion-mnist -o $t
        assert_failure 1
        assert_output "dataset: $msg"
        run "$B/teacher-extract" -m m.h5 --features d.h5 -o $t
        assert_failure 1
        assert_output "teacher-extract: $msg"
        run "$B/teacher-extract" -m m.h5 --save-cache $t s.kdt -o o.kdt
        assert_failure 1
        assert_output "teacher-extract: $msg"
        run sh -c "'$B/distill-step' --method ce -m m.h5 -o $t < s.kdt"
        assert_failure 1
        assert_output "distill-step: $msg"
        run sh -c "'$B/distill-step' --method ce -m m.h5 --ckpt $t -o out.h5 < s.kdt"
        assert_failure 1
        assert_output "distill-step: $msg"
        run "$B/linprobe" --save $t d.h5 d.h5
        assert_failure 1
        assert_output "linprobe: $msg"
    done
    [ -p fifo ] && [ -d dir ] && [ "$(readlink null)" = /dev/null ] && [ ! -e out.h5 ] && [ ! -e o.kdt ]
    no_tmp
}

@test "outputs: distill-step finds an output it cannot create at the start, and keeps the old log on bad inputs" {
    "$B/augment" --batch 16 --views 1 --quiet d.h5 > s.kdt
    run sh -c "'$B/distill-step' --method ce -m m.h5 -o nodir/out.h5 < s.kdt"
    assert_failure 1
    assert_output "distill-step: nodir/out.h5: cannot create a file beside it: No such file or directory"
    run sh -c "'$B/distill-step' --method ce -m m.h5 --ckpt nodir/c.h5 -o out.h5 < s.kdt"
    assert_failure 1
    assert_output "distill-step: nodir/c.h5: cannot create a file beside it: No such file or directory"
    [ ! -e out.h5 ]
    echo '{"old": 1}' > log.json
    run sh -c "'$B/distill-step' --method ce -m missing.h5 --log log.json -o out.h5 < s.kdt"
    assert_failure 1
    [ "$(cat log.json)" = '{"old": 1}' ]
    head -c 100 s.kdt > cut.kdt
    run sh -c "'$B/distill-step' --method ce -m m.h5 --log log.json -o out.h5 < cut.kdt"
    assert_failure 1
    [ "$(cat log.json)" = '{"old": 1}' ]
    run sh -c "'$B/distill-step' --method ce -m m.h5 --log log.json -o out.h5 < s.kdt"
    assert_success
    grep -q '"output": "out.h5"' log.json
    no_tmp
}

@test "outputs: no temporary after a usage error once the output is open, or a runtime failure" {
    "$B/augment" --batch 16 --views 1 --quiet d.h5 > s.kdt
    run "$B/teacher-extract" -m m.h5 --views "" s.kdt -o o.kdt
    assert_failure 2
    assert_output --partial "teacher-extract: --views: empty list"
    run "$B/teacher-extract" -m m.h5 --views view0 --save-cache c.h5 s.kdt -o o.kdt
    assert_success
    head -c 3000 s.kdt > cut.kdt
    run "$B/teacher-extract" -m m.h5 --save-cache c2.h5 cut.kdt -o o2.kdt
    assert_failure 1
    [ ! -e o2.kdt ] && [ ! -e c2.h5 ]
    no_tmp
}

@test "outputs: SIGINT, SIGTERM and SIGHUP remove the temporary and end the program by the signal" {
    for sig in INT TERM HUP; do
        dfl "$B/augment" --epochs 2000 --batch 16 --quiet d.h5 -o big.kdt &
        pid=$!
        while ! ls -A | grep -q '^\.big\.kdt\.tmp\.'; do sleep 0.05; done
        kill -$sig $pid
        status=0
        wait $pid || status=$?
        [ "$status" = $((128 + $(kill -l $sig))) ]
        [ ! -e big.kdt ]
        no_tmp
    done
    # an HDF5 output (kd_h5) the same way
    "$B/dataset" --limit 2000 --split test /usr/share/datasets/fashion-mnist -o d2k.h5 >/dev/null
    dfl "$B/teacher-extract" -m m.h5 --features d2k.h5 --batch 8 -o f.h5 &
    pid=$!
    while ! ls -A | grep -q '^\.f\.h5\.tmp\.'; do sleep 0.05; done
    kill -INT $pid
    status=0
    wait $pid || status=$?
    [ "$status" = 130 ]
    [ ! -e f.h5 ]
    no_tmp
}

@test "outputs: a file size limit (SIGXFSZ) removes the temporary" {
    run sh -c "ulimit -f 64; exec '$B/augment' --batch 16 --views 1 --epochs 50 --quiet d.h5 -o big.kdt"
    [ "$status" = 153 ]
    run sh -c "ulimit -f 64; exec '$B/dataset' --limit 2000 --split test /usr/share/datasets/fashion-mnist -o d2k.h5"
    [ "$status" = 153 ]
    [ ! -e big.kdt ] && [ ! -e d2k.h5 ]
    no_tmp
}

@test "usage: getopt's messages name the program, not the path it was run as (every program)" {
    n=0
    for p in "$B"/*; do
        case $p in *.c | *.d | *.o) continue ;; esac
        [ -f "$p" ] && [ -x "$p" ] || continue
        run "$p" --no-such-option
        assert_failure 2
        assert_line --index 0 "$(basename "$p"): unrecognized option '--no-such-option'"
        n=$((n + 1))
    done
    [ "$n" -eq "$(ls "$BATS_TEST_DIRNAME"/../bin/*.c | wc -l)" ]
}

@test "outputs: HDF5 files hold no timestamps, so the same run a second later gives the same bytes" {
    # a model (datasets at the root and in groups) and a detector's
    # detections, each made twice across a second boundary
    "$B/model-init" --arch resnet20 --in-channels 1 --seed 3 -o a.h5 > /dev/null
    "$B/dataset" /usr/share/datasets/fashion-mnist --split test --limit 200 --scenes 8 --canvas 32x32 --scale 0.6,1 -o s1.h5 > /dev/null
    sleep 1.1
    "$B/model-init" --arch resnet20 --in-channels 1 --seed 3 -o b.h5 > /dev/null
    "$B/dataset" /usr/share/datasets/fashion-mnist --split test --limit 200 --scenes 8 --canvas 32x32 --scale 0.6,1 -o s2.h5 > /dev/null
    cmp a.h5 b.h5
    cmp s1.h5 s2.h5
    # and the groups are real groups, read back by h5py
    $PY -c "import h5py; f = h5py.File('s1.h5'); assert isinstance(f, h5py.Group) and len(f.keys()) > 0"
    run h5dump -H a.h5
    assert_success
    refute_output --partial "MODIFICATION"
}
