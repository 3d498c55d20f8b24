#!/usr/bin/env bats
# Fault injection, as SQLite tests it: tests/fault/kd_fault.so (LD_PRELOAD)
# fails the N-th write, fsync, rename, malloc or H5Dwrite of a run (see the
# top of tests/fault/kd_fault.c for what each class covers).  For every
# writer, one clean run counts the calls; then, for each class, the N-th call
# fails, and whatever N is the program
#   - exits 0 with the same output as the clean run, or exits 1 (never 2,
#     never a signal) with a "program: ..." message on stderr;
#   - leaves the old output (a file made before the run) as it was unless it
#     exits 0 (one exception: a failed result line on stdout, reported after
#     the output was complete and renamed into place: the new output must
#     then be the clean run's);
#   - leaves no temporary (.NAME.tmp.PID beside an output, kdpipe-stdin.*).
# Known limit, reported and tolerated only for a failed malloc made inside
# libhdf5 or libblis: a crash (HDF5 1.10 and BLIS do not survive every
# failed allocation of their own; see the top of kd_fault.c); the old output
# must still be intact and no temporary left.
# Which N: every N up to 12, then 12 more spread evenly up to the total (the
# last call always among them), but every N of kdmalloc (the allocations of
# kdpipe's own code, a few dozen a run, where malloc's tens of thousands are
# mostly HDF5's); KD_FAULT_ALL=1 tries every N of every class up to the total
# (minutes: distill-step alone makes about 40000 allocations), and
# KD_FAULT_CLASSES="write fsync" limits the classes.
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

B="$BATS_TEST_DIRNAME/../bin"
SO="$BATS_TEST_DIRNAME/fault/kd_fault.so"
FM=/usr/share/datasets/fashion-mnist
CLASSES=${KD_FAULT_CLASSES:-write fsync rename kdmalloc malloc H5Dwrite}

setup_file() {
    # a tmpfs when there is one: every run fsyncs, and there are hundreds
    local d
    d=$(mktemp -d /dev/shm/kdfault.XXXXXX 2>/dev/null) || d=$(mktemp -d "$BATS_FILE_TMPDIR/w.XXXXXX")
    export FW="$d"
    cd "$FW"
    "$B/dataset" --limit 32 "$FM" -o d.h5 >/dev/null
    "$B/model-init" --arch resnet20 --in-channels 1 --num-classes 10 -o m.h5 >/dev/null
    "$B/augment" --policy crop-flip --views 1 --batch 8 --seed 5 --quiet d.h5 -o s.kdt
    "$B/augment" --policy crop-flip --views 1 --batch 8 --limit 8 --seed 5 --quiet d.h5 -o s1.kdt
    "$B/teacher-extract" -m m.h5 --features d.h5 --threads 1 --quiet -o f.h5 >/dev/null
}

teardown_file() {
    case "$FW" in /dev/shm/kdfault.*) rm -rf "$FW" ;; esac
}

setup() {
    [ -z "$KD_ASAN" ] || skip "LD_PRELOAD of the fault library cannot run under KD_ASAN (ASan must come first)"
    [ -f "$SO" ] || fail "$SO is not built (make tests/fault/kd_fault.so)"
    cd "$FW"
    export TMPDIR="$FW"
    ulimit -c 0
}

points() { # CLASS TOTAL: the N tried
    local t=$2 n k
    if [ -n "$KD_FAULT_ALL" ] || [ "$1" = kdmalloc ]; then
        seq 1 "$t"
        return
    fi
    for ((n = 1; n <= t && n <= 12; n++)); do echo $n; done
    ((t > 12)) || return 0
    k=$(((t - 12 + 11) / 12))
    for ((n = 12 + k; n < t; n += k)); do echo $n; done
    echo "$t"
}

fingerprint() { # FILE: its tensors' names, shapes and statistics
    "$B/tensor-info" --quiet "$1" 2>&1
}

# sweep PROG "OUT [EXTRA...]" -- COMMAND...  (stdin from $STDIN or /dev/null)
# OUT is the output that appears only on success; EXTRA outputs (a
# checkpoint written during the run) must each be the old file or a valid one.
sweep() {
    local prog=$1 outs=($2) out=$2 o cls n t rc bad lib errs=0 tried=0 known=0
    shift 3
    out=${outs[0]}
    local stdin=${STDIN:-/dev/null}
    rm -f "${outs[@]}"
    echo "an old output" > old.txt
    KD_FAULT_COUNT=count.txt LD_PRELOAD="$SO" "$@" < "$stdin" > /dev/null 2> err.txt ||
        fail "$prog: the clean run failed: $(cat err.txt)"
    local ref
    ref=$(fingerprint "$out")
    for cls in $CLASSES; do
        t=$(awk -v c="$cls" '$1 == c { print $2 }' count.txt)
        for n in $(points "$cls" "$t"); do
            tried=$((tried + 1))
            for o in "${outs[@]}"; do cp old.txt "$o"; done
            rc=0
            rm -f fired.txt
            KD_FAULT=$cls:$n KD_FAULT_COUNT=fired.txt LD_PRELOAD="$SO" "$@" < "$stdin" > /dev/null 2> err.txt || rc=$?
            bad=""
            case $rc in
            0) [ "$(fingerprint "$out")" = "$ref" ] || bad="$bad exit 0 with a different output" ;;
            1) grep -q "^$prog: ." err.txt || bad="$bad exit 1 without a message"
               if ! cmp -s old.txt "$out"; then
                   grep -q "^$prog: stdout: write failed" err.txt && [ "$(fingerprint "$out")" = "$ref" ] ||
                       bad="$bad the old $out changed"
               fi ;;
            *) # HDF5 1.10 and BLIS do not survive every failed allocation of
               # their own (a crash, an abort): a known limit, counted, not a
               # pass for anything else (the old output and no temporary still)
               if [ "$cls" = malloc ] && grep -Eq "^fired malloc $n in lib(hdf5|blis)" fired.txt; then
                   lib=$(sed -n 's/^fired malloc [0-9]* in \(lib[a-z0-9_]*\).*/\1/p' fired.txt)
                   known=$((known + 1))
                   echo "# $prog malloc:$n: exit $rc (known: $lib)" >&3
                   cmp -s old.txt "$out" || bad="$bad the old $out changed"
               else
                   bad="$bad exit $rc"
               fi ;;
            esac
            for o in "${outs[@]:1}"; do
                cmp -s old.txt "$o" || "$B/tensor-info" --quiet "$o" > /dev/null 2>&1 ||
                    bad="$bad $o is neither the old file nor a valid one"
            done
            for o in "${outs[@]}"; do
                ls -A "$(dirname "$o")" | grep -q "^\.$(basename "$o")\.tmp\." && bad="$bad a temporary of $o left"
                rm -f "$(dirname "$o")"/."$(basename "$o")".tmp.*
            done
            ls -A | grep -q '^kdpipe-stdin\.' && bad="$bad a stdin spool left" && rm -f kdpipe-stdin.*
            if [ -n "$bad" ]; then
                errs=$((errs + 1))
                echo "# $prog $cls:$n ($(cat fired.txt 2>/dev/null | grep fired || echo no report)):$bad: $(head -c 300 err.txt)" >&3
            fi
        done
    done
    echo "# $prog: $tried fault points, $known known library crashes ($(tr '\n' ' ' < count.txt | sed 's/ $//') in the clean run)" >&3
    [ "$errs" = 0 ] || fail "$prog: $errs of $tried fault points misbehaved"
}

@test "the fault library counts and fails the N-th call, and only it" {
    KD_FAULT_COUNT=c.txt LD_PRELOAD="$SO" "$B/model-init" --arch resnet20 --in-channels 1 --num-classes 10 -o m2.h5 >/dev/null
    for cls in $CLASSES; do grep -Eq "^$cls [1-9][0-9]*$" c.txt; done
    grep -qx "fsync 2" c.txt # the file's, then its directory's
    run env KD_FAULT=rename:1 KD_FAULT_COUNT=f.txt LD_PRELOAD="$SO" "$B/model-init" --arch resnet20 --in-channels 1 --num-classes 10 -o m2.h5
    assert_failure 1
    assert_output --partial "model-init: m2.h5: cannot rename into place: Input/output error"
    grep -q "^fired rename 1 in model-init$" f.txt
    # the directory's fsync is best effort: failing it alone (one-shot) lets the
    # run go on and finish; failing every fsync from the first stops it
    run env KD_FAULT=fsync:2 KD_FAULT_COUNT=f.txt LD_PRELOAD="$SO" "$B/model-init" --arch resnet20 --in-channels 1 --num-classes 10 -o m2.h5
    assert_success
    grep -q "^fired fsync 2 in model-init$" f.txt
    run env KD_FAULT=fsync:1+ LD_PRELOAD="$SO" "$B/model-init" --arch resnet20 --in-channels 1 --num-classes 10 -o m2.h5
    assert_failure 1
    assert_output --partial "model-init: m2.h5: cannot sync: Input/output error"
}

@test "model-init under faults" {
    sweep model-init "o.h5" -- "$B/model-init" --arch resnet20 --in-channels 1 --num-classes 10 -o o.h5
}

@test "dataset under faults" {
    sweep dataset "o.h5" -- "$B/dataset" --limit 32 "$FM" -o o.h5
}

@test "teacher-extract --features under faults" {
    sweep teacher-extract "o.h5" -- "$B/teacher-extract" -m m.h5 --features d.h5 --threads 1 --quiet -o o.h5
}

@test "teacher-extract stream output under faults" {
    STDIN=s.kdt sweep teacher-extract "o.kdt" -- "$B/teacher-extract" -m m.h5 --threads 1 --quiet -o o.kdt
}

@test "distill-step -o and --ckpt under faults" {
    STDIN=s1.kdt sweep distill-step "o.h5 c.h5" -- "$B/distill-step" --method ce -m m.h5 --threads 1 --quiet \
        --ckpt-every 1 --ckpt c.h5 -o o.h5
}

@test "linprobe --save under faults" {
    sweep linprobe "o.h5" -- "$B/linprobe" --epochs 1 --threads 1 --quiet --save o.h5 f.h5 f.h5
}
