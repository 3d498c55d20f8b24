#!/usr/bin/env bats
# teacher-extract --save-cache / --from-cache: the cache replays the live
# teacher byte for byte, and refuses any other stream with the first frame
# and field that differ.
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

setup_file() {
    TE="$BATS_TEST_DIRNAME/../bin/teacher-extract"
    AUG="$BATS_TEST_DIRNAME/../bin/augment"
    FM="$BATS_TEST_DIRNAME/fixtures/aug_fm.h5"
    T="$BATS_FILE_TMPDIR"
    "$BATS_TEST_DIRNAME/../bin/model-init" --arch resnet20 --in-channels 1 --num-classes 10 --head mlp:32:16 \
        -o "$T/r20.h5" >/dev/null
    # 2 views, 2 epochs of 3 frames; the reference stream and its variants
    A="--policy mocov2 --views 2 --batch 16 --limit 48"
    "$AUG" $A --epochs 2 --seed 7 "$FM" -o "$T/s.kdt" >/dev/null
    "$AUG" $A --epochs 2 --seed 8 "$FM" -o "$T/seed8.kdt" >/dev/null
    "$AUG" $A --epochs 3 --seed 7 "$FM" -o "$T/e3.kdt" >/dev/null
    "$AUG" $A --epochs 1 --seed 7 "$FM" -o "$T/e1.kdt" >/dev/null
    "$AUG" $A --epochs 2 --seed 7 --no-shuffle "$FM" -o "$T/noshuf.kdt" >/dev/null
    "$AUG" $A --epochs 1 --start-epoch 1 --seed 7 "$FM" -o "$T/late.kdt" >/dev/null
    "$AUG" --policy mocov2 --views 2 --batch 24 --limit 48 --epochs 2 --seed 7 "$FM" -o "$T/b24.kdt" >/dev/null
    # embeddings, features, logits and a map; once plain, once saving the cache
    "$TE" -m "$T/r20.h5" --maps 2 "$T/s.kdt" -o "$T/live.kdt" >/dev/null
    "$AUG" $A --epochs 2 --seed 7 "$FM" | "$TE" -m "$T/r20.h5" --maps 2 --save-cache "$T/c.h5" > "$T/saved.kdt"
}

setup() {
    TE="$BATS_TEST_DIRNAME/../bin/teacher-extract"
    TI="$BATS_TEST_DIRNAME/../bin/tensor-info"
    FM="$BATS_TEST_DIRNAME/fixtures/aug_fm.h5"
    T="$BATS_FILE_TMPDIR"
}

@test "--save-cache: the stream is the live teacher's, byte for byte; the cache's layout" {
    cmp "$T/live.kdt" "$T/saved.kdt"
    run h5ls -r "$T/c.h5"
    assert_output --partial "/frames                  Dataset {6/Inf, 6}"
    assert_output --partial "/index                   Dataset {96/Inf}"
    assert_output --partial "/tensors/t.emb1          Dataset {96/Inf, 16}"
    assert_output --partial "/tensors/t.feat0         Dataset {96/Inf, 64}"
    assert_output --partial "/tensors/t.map0          Dataset {96/Inf, 32, 14, 14}"
    /usr/bin/python3 - "$T/c.h5" "$T/r20.h5" <<'EOF'
import h5py, sys, zlib
f = h5py.File(sys.argv[1], 'r')
a = f.attrs
assert a['kdpipe_kind'] == 'teacher-cache' and a['arch'] == 'resnet20' and a['prefix'] == 't.'
assert a['model_crc32'] == zlib.crc32(open(sys.argv[2], 'rb').read())
assert list(a['tensors']) == ['t.emb0', 't.feat0', 't.logits0', 't.map0', 't.emb1', 't.feat1', 't.logits1', 't.map1']
assert a['frames'] == 6 and a['rows'] == 96 and a['epochs'] == 2 and a['batches'] == 3
assert list(f['frames'].attrs['columns']) == ['seed', 'epoch', 'step', 'batch', 'rows', 'offset']
fr = f['frames'][:]
assert (fr[:, 0] == 7).all() and list(fr[:, 2]) == list(range(6)) and list(fr[:, 5]) == list(range(0, 96, 16))
ds = f['tensors/t.emb0']
assert ds.compression == 'gzip' and ds.shuffle and ds.fletcher32
EOF
}

@test "--from-cache gives the live teacher's bytes, from a file and in a pipe" {
    run "$TE" --from-cache "$T/c.h5" "$T/s.kdt" -o "$T/fc.kdt"
    assert_success
    assert_output --partial '"frames": 6, "images": 96'
    cmp "$T/live.kdt" "$T/fc.kdt"
    "$TE" --from-cache "$T/c.h5" < "$T/s.kdt" | cat > "$T/fc2.kdt"
    cmp "$T/live.kdt" "$T/fc2.kdt"
    # tensors already in the stream are replaced in place, as the live teacher does
    "$TE" --from-cache "$T/c.h5" "$T/live.kdt" -o "$T/fc3.kdt" >/dev/null
    cmp "$T/live.kdt" "$T/fc3.kdt"
    # a shorter run over the same stream (fewer epochs) is a prefix: allowed
    run "$TE" --from-cache "$T/c.h5" "$T/e1.kdt" -o "$T/fc4.kdt"
    assert_success
    assert_output --partial '"frames": 3, "images": 48'
}

@test "another stream: the first frame and field that differ, exit 1, no output" {
    run "$TE" --from-cache "$T/c.h5" "$T/seed8.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "teacher-extract: frame 0: the cache was written for step 0 of seed 7, this frame is step 0 of seed 8 (a cache belongs to one augment stream)"
    run "$TE" --from-cache "$T/c.h5" "$T/e3.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "teacher-extract: frame 6: the cache holds only 6 frames"
    run "$TE" --from-cache "$T/c.h5" "$T/b24.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "teacher-extract: frame 0: the cache was written for a frame of 16 rows, this frame has 24 (a cache belongs to one augment stream)"
    run "$TE" --from-cache "$T/c.h5" "$T/noshuf.kdt" -o "$T/o.kdt"
    assert_failure 1
    expect=$(/usr/bin/python3 -c "import h5py,sys; print(h5py.File(sys.argv[1])['index'][0])" "$T/c.h5")
    assert_output "teacher-extract: frame 0: row 0: index 0, the cache has $expect"
    [ ! -e "$T/o.kdt" ]
    run "$TE" --from-cache "$T/c.h5" "$T/late.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "teacher-extract: frame 0: the cache was written for epoch 0, this frame is epoch 1 (a cache belongs to one augment stream)"
    [ ! -e "$T/o.kdt" ]
}

@test "a failure after frames went to a pipe: the consumer sees an unfinished stream" {
    run sh -c "'$TE' --from-cache '$T/c.h5' '$T/e3.kdt' | '$TI' - >/dev/null"
    assert_failure 1
    assert_output --partial "teacher-extract: frame 6: the cache holds only 6 frames"
    assert_output --partial "tensor-info: <stdin>: the stream ended without its end marker (the writer died?) after 6 frames"
}

@test "bad caches: truncated, another kind, not HDF5, missing" {
    cp "$T/c.h5" "$T/t.h5"
    truncate -s $(( $(stat -c %s "$T/c.h5") / 2 )) "$T/t.h5"
    run "$TE" --from-cache "$T/t.h5" "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "teacher-extract: $T/t.h5: cannot open HDF5 file (truncated or corrupt?)"
    run "$TE" --from-cache "$T/r20.h5" "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "teacher-extract: $T/r20.h5: is a kdpipe 'model' file, expected a 'teacher-cache' file"
    run "$TE" --from-cache "$FM" "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "teacher-extract: $FM: is a kdpipe 'dataset' file, expected a 'teacher-cache' file"
    printf 'not hdf5' > "$T/junk.h5"
    run "$TE" --from-cache "$T/junk.h5" "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "teacher-extract: $T/junk.h5: not an HDF5 file"
    run "$TE" --from-cache "$T/none.h5" "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 1
    assert_output "teacher-extract: $T/none.h5: No such file or directory"
    [ ! -e "$T/o.kdt" ]
}

@test "an interrupted --save-cache run leaves no cache" {
    mkdir -p "$T/int"
    head -c 300000 "$T/s.kdt" > "$T/int/cut.kdt"
    run "$TE" -m "$T/r20.h5" --save-cache "$T/int/c.h5" "$T/int/cut.kdt" -o "$T/int/o.kdt"
    assert_failure 1
    assert_output --partial "truncated payload"
    run "$TE" -m "$T/r20.h5" --save-cache "$T/int/c.h5" "$T/int/none.kdt" -o "$T/int/o.kdt"
    assert_failure 1
    run ls -A "$T/int"
    assert_output "cut.kdt"
}

@test "cache usage errors exit 2" {
    run "$TE" --from-cache "$T/c.h5" -m "$T/r20.h5" "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 2
    assert_output --partial "teacher-extract: --from-cache replaces the model: give -m or --from-cache, not both"
    run "$TE" --save-cache "$T/x.h5" "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 2
    assert_output --partial "teacher-extract: --save-cache needs -m MODEL.h5: it stores what the model computes"
    run "$TE" -m "$T/r20.h5" --save-cache "$T/x.h5" --features "$FM" -o "$T/f.h5"
    assert_failure 2
    assert_output --partial "teacher-extract: --save-cache applies to stream mode only (a features file already keeps what the model computed)"
    run "$TE" --from-cache "$T/c.h5" --maps 2 "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 2
    assert_output --partial "--from-cache adds what the cache holds"
    [ ! -e "$T/o.kdt" ] && [ ! -e "$T/x.h5" ] && [ ! -e "$T/f.h5" ]
}

@test "--cam through the cache: the cache keeps t.cam{i}, --from-cache gives the live bytes back" {
    "$TE" -m "$T/r20.h5" --cam --save-cache "$T/cc.h5" "$T/s.kdt" -o "$T/clive.kdt" >/dev/null
    run h5ls -r "$T/cc.h5"
    assert_output --partial "/tensors/t.cam0          Dataset {96/Inf, 10, 7, 7}"
    assert_output --partial "/tensors/t.cam1          Dataset {96/Inf, 10, 7, 7}"
    run "$TE" --from-cache "$T/cc.h5" "$T/s.kdt" -o "$T/cfc.kdt"
    assert_success
    cmp "$T/clive.kdt" "$T/cfc.kdt"
    run "$TE" --from-cache "$T/c.h5" --cam "$T/s.kdt" -o "$T/o.kdt"
    assert_failure 2
    assert_output --partial "--no-feat, --cam, --batch, --mean, --std and --limit need a model"
}
