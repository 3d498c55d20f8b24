#!/usr/bin/env bats
# `make demo` (scripts/demo -> pipelines/mission.mk), shortened: a few
# hundred images, one epoch; and the self-supervised pipeline it grew from.
# Every stage runs for real through pipes and HDF5 files.
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

@test "make demo, shortened: teachers, MoCo/DisCo and alone/KD/MSD students, probes, transfer, table and plots" {
    cd "$BATS_TEST_DIRNAME/.."
    out="$BATS_TEST_TMPDIR/demo"
    small=(SSL_FLAGS='LIMIT=128 TEST_LIMIT=128 BATCH=32 T_ARCH=resnet20 T_HEAD=mlp:64:128 T_EPOCHS=1 S_EPOCHS=1 S_METHODS="moco disco" BOTTLENECK=2048 M_ARCH= QUEUE=256 VAL_LIMIT=64 BANK_LIMIT=128 CKPT_EVERY=2'
           KD_FLAGS='T_LIMIT=256 LIMIT=128 TEST_LIMIT=128 BATCH=32 T_ARCH=resnet20 T_EPOCHS=1 S_EPOCHS=1 ARCHS=resnet20 METHODS="ce kd msd" CKPT_EVERY=2'
           TR_FLAGS='MODES="frozen finetune" CANVAS=32x32 TRAIN_SCENES=32 TEST_SCENES=8 STEPS=4 BATCH=4 HEAD_CH=8 CKPT_EVERY=2')
    DEMO_OUT="$out" run scripts/demo "${small[@]}"
    assert_success
    assert_line --index 0 "# Results: pretrain, distil, probe, transfer"
    assert_line --regexp '^Machine: .*, (AVX-512|AVX2|no AVX2), [0-9]+ cores\.$'
    assert_line --regexp '^\| ssl \| [0-9]+s \| `make --no-print-directory -f pipelines/ssl-distill-fmnist.mk OUT=.*`'
    assert_line --regexp '^\| teacher \| MoCo v2 \| 2048 \| 1 \| 0\.[0-9]{4} \| 0\.[0-9]{4} \| [0-9]+s \|$'
    assert_line --regexp '^\| resnet20 \| MoCo v2 alone \| 2048 \| 1 \| 0\.[0-9]{4} \| 0\.[0-9]{4} \| [0-9]+s \|$'
    assert_line --regexp '^\| resnet20 \| DisCo \(moco:1,disco:16\) \| 2048 \| 1 \| 0\.[0-9]{4} \| 0\.[0-9]{4} \| [0-9]+s \|$'
    assert_line --regexp '^\| teacher \| CE \| 1 \| 0\.[0-9]{4} \| \| [0-9]+s \|$'
    assert_line --regexp '^\| resnet20 \| KD \| 1 \| 0\.[0-9]{4} \| [-+][0-9.]+ \| [0-9]+s \|$'
    assert_line --regexp '^\| resnet20 \| MSD \| 1 \| 0\.[0-9]{4} \| [-+][0-9.]+ \| [0-9]+s \|$'
    for m in frozen fine-tuned; do
        assert_line --regexp "^\| disco \| $m \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9]+s \|\$"
    done
    assert_line --partial "demo: done in "
    for p in bars curves; do
        run /usr/bin/python3 -c "b=open('$out/$p.png','rb').read(); print(b[:4]==b'\x89PNG', len(b) > 10000)"
        assert_output "True True"
    done
    # quiet when stderr is not a terminal: the log holds the pipelines' output
    grep -q "mission: stage transfer: done in" "$out/demo.log"
    # the frozen transfer runs clip the head's gradient (mission.mk's TR_FROZEN), the fine-tuned ones do not
    grep -q 'FROZEN_FLAGS="--clip-grad=10"' "$out/stage-transfer.cmd"
    [ "$(grep -c 'detect-train .*--freeze-backbone --clip-grad=10 ' "$out/demo.log")" -eq 3 ]
    [ "$(grep -c 'detect-train .*--clip-grad' "$out/demo.log")" -eq 3 ]
    # a rerun trains nothing and keeps the stages' times
    cp "$out/stage-ssl.time" "$BATS_TEST_TMPDIR/t"
    DEMO_OUT="$out" run scripts/demo "${small[@]}"
    assert_success
    grep -q "mission: stage ssl: up to date" "$out/demo.log"
    cmp "$out/stage-ssl.time" "$BATS_TEST_TMPDIR/t"
}
