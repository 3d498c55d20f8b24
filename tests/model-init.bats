#!/usr/bin/env bats
# model-init: usage, every architecture, parameter counts against torchvision/CRD,
# determinism, atomic output.
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

setup() {
    MI="$BATS_TEST_DIRNAME/../bin/model-init"
    T="$BATS_TEST_TMPDIR"
}

@test "model-init --help prints usage to stdout" {
    run "$MI" --help
    assert_success
    assert_output --partial "Usage: model-init --arch NAME"
    assert_output --partial "mobilenet_v3_large"
}

@test "model-init --version" {
    run "$MI" --version
    assert_success
    assert_output --partial "0.1"
}

@test "usage errors exit 2" {
    run "$MI" -o "$T/m.h5"
    assert_failure 2
    assert_output --partial "--arch is required"
    run "$MI" --arch resnet18
    assert_failure 2
    run "$MI" --arch resnet99 -o "$T/m.h5"
    assert_failure 2
    assert_output --partial "unknown architecture 'resnet99'"
    run "$MI" --arch resnet18 --in-channels 2 -o "$T/m.h5"
    assert_failure 2
    run "$MI" --arch resnet18 --head mlp:128 -o "$T/m.h5"
    assert_failure 2
    assert_output --partial "mlp:HIDDEN:OUT"
    run "$MI" --arch resnet18 --head mlp:128:64:xx -o "$T/m.h5"
    assert_failure 2
    run "$MI" --arch mobilenet_v2 --cifar-stem -o "$T/m.h5"
    assert_failure 2
    assert_output --partial "cifar-stem"
    run "$MI" --arch resnet18 --width-mult 0.5 -o "$T/m.h5"
    assert_failure 2
    run "$MI" --arch resnet18 --num-classes -3 -o "$T/m.h5"
    assert_failure 2
    run "$MI" --arch resnet18 extra -o "$T/m.h5"
    assert_failure 2
    [ ! -e "$T/m.h5" ]
}

# torchvision / CRD parameter counts (sum of p.numel() in PyTorch 1.13)
@test "parameter counts equal PyTorch's for every architecture" {
    while read -r arch k want extra; do
        run "$MI" --arch "$arch" --num-classes "$k" $extra -o "$T/$arch.h5"
        assert_success
        assert_output --partial "\"params\": $want,"
        [ -s "$T/$arch.h5" ]
    done <<'LIST'
resnet18 1000 11689512
resnet34 1000 21797672
resnet50 1000 25557032
resnet20 100 278324
resnet56 100 861620
resnet8x4 100 1232964 --in-channels=1
resnet32x4 100 7433860
wrn_16_2 100 703284
wrn_40_2 100 2255156
mobilenet_v2 1000 3504872
efficientnet_b0 1000 5288548
mobilenet_v3_large 1000 5483032
mobilenet_v2 10 700202 --width-mult=0.5 --in-channels=1
LIST
}

@test "model file layout: PyTorch names and shapes, attributes, i64 num_batches_tracked" {
    run "$MI" --arch resnet18 --in-channels 1 --cifar-stem --num-classes 10 --head mlp:64:32:bn -o "$T/r.h5"
    assert_success
    assert_output --partial '"emb_dim": 32'
    run h5ls "$T/r.h5"
    assert_output --partial "conv1.weight             Dataset {64, 1, 3, 3}"
    assert_output --partial "layer2.0.downsample.0.weight Dataset {128, 64, 1, 1}"
    assert_output --partial "fc.weight                Dataset {10, 512}"
    assert_output --partial "head.1.running_var       Dataset {64}"
    assert_output --partial "head.3.weight            Dataset {32, 64}"
    run h5dump -A -d bn1.num_batches_tracked "$T/r.h5"
    assert_output --partial "H5T_STD_I64LE"
    run h5dump -a arch "$T/r.h5"
    assert_output --partial '"resnet18"'
    run h5dump -a kdpipe_kind "$T/r.h5"
    assert_output --partial '"model"'
}

@test "deterministic in --seed" {
    "$MI" --arch resnet20 --num-classes 10 --seed 5 -o "$T/a.h5" >/dev/null
    "$MI" --arch resnet20 --num-classes 10 --seed 5 -o "$T/b.h5" >/dev/null
    "$MI" --arch resnet20 --num-classes 10 --seed 6 -o "$T/c.h5" >/dev/null
    run h5diff "$T/a.h5" "$T/b.h5"
    assert_success
    run h5diff -q "$T/a.h5" "$T/c.h5"
    assert_failure
}

@test "-o - writes the HDF5 file to a pipe" {
    "$MI" --arch wrn_16_2 --in-channels 1 -o - | cat > "$T/p.h5"
    run h5ls "$T/p.h5"
    assert_success
    assert_output --partial "block1.layer.0.convShortcut.weight"
}

@test "unwritable output: exit 1, nothing left behind" {
    # a path below a regular file cannot be created, even by root
    : > "$T/plainfile"
    run "$MI" --arch resnet20 -o "$T/plainfile/m.h5"
    assert_failure 1
    assert_output "model-init: $T/plainfile/m.h5: cannot create a file beside it: Not a directory"
    [ -z "$(ls -A "$T" | grep -v '^plainfile$')" ]
}

@test "output into a missing directory: exit 1 with a message" {
    run "$MI" --arch resnet20 -o "$T/nodir/m.h5"
    assert_failure 1
    assert_output "model-init: $T/nodir/m.h5: cannot create a file beside it: No such file or directory"
    [ ! -e "$T/nodir" ]
}
