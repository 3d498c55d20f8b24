#!/usr/bin/env bats
# The experiment pipelines, run whole on a few hundred images: every target,
# every recipe line and every script they call is exercised; the numbers are
# not the experiment's (that is `make -f pipelines/...` at its defaults).
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

ROOT="$BATS_TEST_DIRNAME/.."

@test "pipelines/ssl-distill-fmnist.mk: teacher, cache, MoCo/DisCo/SEED students over two seeds, ablation, table" {
    cd "$ROOT"
    out="$BATS_TEST_TMPDIR/sd"
    run make -s -f pipelines/ssl-distill-fmnist.mk OUT="$out" LIMIT=128 TEST_LIMIT=128 BATCH=32 \
        T_ARCH=resnet20 T_HEAD=mlp:64:128 T_EPOCHS=1 S_EPOCHS=1 SEEDS="1 2" BOTTLENECK="32 2048" \
        M_ARCH=mobilenet_v2 QUEUE=256 VAL_LIMIT=64 BANK_LIMIT=128 CKPT_EVERY=2 "$out/results.md" "$out/curves.png"
    assert_success
    # the table: the teacher, 3 methods x resnet20/2048 over seeds 1,2 (mean +- std), the ablation, the mobile student
    cp "$out/results.md" "$BATS_TEST_TMPDIR/../results.md" 2>/dev/null || true
    run cat "$out/results.md"
    assert_line --regexp '^\| teacher \| MoCo v2 \| 2048 \| 1 \| 0\.[0-9]{4} \| 0\.[0-9]{4} \| [0-9]+s \|$'
    for m in "MoCo v2 alone" "DisCo \(moco:1,disco:32\)" "SEED"; do
        assert_line --regexp "^\| resnet20 \| $m \| 2048 \| 1,2 \| 0\.[0-9]{4} ± 0\.[0-9]{4} \| 0\.[0-9]{4} ± 0\.[0-9]{4} \|"
        assert_line --regexp "^\| mobilenet_v2 \| $m \| 2048 \| 1 \| 0\.[0-9]{4} \| 0\.[0-9]{4} \|"
    done
    assert_line --regexp '^\| resnet20 \| DisCo \(moco:1,disco:32\) \| 32 \| 1 \|'
    [ -s "$out/curves.png" ] && [ -s "$out/cache-1.h5" ] && [ -s "$out/cache-2.h5" ]
    grep -q '"loss_disco"' "$out/s-disco-resnet20-2048-1.log"
    grep -q '"loss_seed"' "$out/s-seed-resnet20-2048-2.log"
    # a rerun redoes nothing
    run make -f pipelines/ssl-distill-fmnist.mk OUT="$out" LIMIT=128 TEST_LIMIT=128 BATCH=32 \
        T_ARCH=resnet20 T_HEAD=mlp:64:128 T_EPOCHS=1 S_EPOCHS=1 SEEDS="1 2" BOTTLENECK="32 2048" \
        M_ARCH=mobilenet_v2 QUEUE=256 VAL_LIMIT=64 BANK_LIMIT=128 CKPT_EVERY=2 "$out/results.md" "$out/curves.png"
    assert_success
    refute_output --partial "distill-step"
}

@test "pipelines/kd-fmnist.mk: teacher, cache per seed, alone/KD/DKD/CRD/MSD students over two seeds, table, bar chart" {
    cd "$ROOT"
    out="$BATS_TEST_TMPDIR/kd"
    args=(OUT="$out" T_LIMIT=256 LIMIT=128 TEST_LIMIT=128 BATCH=32 T_ARCH=resnet20 T_EPOCHS=1 S_EPOCHS=1
          ARCHS=resnet20 SEEDS="1 2" CRD_K=16 CKPT_EVERY=2)
    run make -s -f pipelines/kd-fmnist.mk "${args[@]}"
    assert_success
    run cat "$out/results.md"
    assert_line --regexp '^\| teacher \| CE \| 1 \| 0\.[0-9]{4} \| \| [0-9]+s \|$'
    assert_line --regexp '^\| resnet20 \| alone \(CE\) \| 1,2 \| 0\.[0-9]{4} ± 0\.[0-9]{4} \|  \| [0-9]+s \|$'
    for m in KD DKD CRD MSD; do
        assert_line --regexp "^\| resnet20 \| $m \| 1,2 \| 0\.[0-9]{4} ± 0\.[0-9]{4} \| [-+][0-9]+\.[0-9]{2} \| [0-9]+s \|$"
    done
    [ -s "$out/bars.png" ] && [ -s "$out/cache-1.h5" ] && [ -s "$out/cache-2.h5" ]
    # each method's own loss is in its log, the teacher ran once per seed
    for m in kd dkd crd msd; do grep -q "\"loss_$m\"" "$out/s-$m-resnet20-2.log"; done
    run make -f pipelines/kd-fmnist.mk "${args[@]}"
    assert_success
    refute_output --partial "distill-step"
    refute_output --partial "teacher-extract -m"
}
