#!/usr/bin/env bats
# The experiment pipelines, run whole on a few hundred images: every target,
# every recipe line and every script they call is exercised; the numbers are
# not the experiment's (that is `make -f pipelines/...` at its defaults).
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

ROOT="$BATS_TEST_DIRNAME/.."

@test "pipelines/ssl-distill-fmnist.mk: teacher, cache, MoCo/DisCo/SEED/SSA students over two seeds, ablations, table" {
    cd "$ROOT"
    out="$BATS_TEST_TMPDIR/sd"
    run make -s -f pipelines/ssl-distill-fmnist.mk OUT="$out" LIMIT=128 TEST_LIMIT=128 BATCH=32 \
        T_ARCH=resnet20 T_HEAD=mlp:64:128 T_EPOCHS=1 S_EPOCHS=1 SEEDS="1 2" BOTTLENECK="32 2048" \
        S_METHODS="moco disco seed ssa" SSA_BATCHES=16 \
        M_ARCH=mobilenet_v2 QUEUE=256 VAL_LIMIT=64 BANK_LIMIT=128 CKPT_EVERY=2 "$out/results.md" "$out/curves.png"
    assert_success
    # the table: the teacher, 3 methods x resnet20/2048 over seeds 1,2 (mean +- std), the ablation, the mobile student
    cp "$out/results.md" "$BATS_TEST_TMPDIR/../results.md" 2>/dev/null || true
    run cat "$out/results.md"
    assert_line --regexp '^\| teacher \| MoCo v2 \| 2048 \| 1 \| 0\.[0-9]{4} \| 0\.[0-9]{4} \| [0-9]+s \|$'
    for m in "MoCo v2 alone" "DisCo \(moco:1,disco:16\)" "SEED" "SSA \(moco:1,disco:16,ssa:1\)"; do
        assert_line --regexp "^\| resnet20 \| $m \| 2048 \| 1,2 \| 0\.[0-9]{4} ± 0\.[0-9]{4} \| 0\.[0-9]{4} ± 0\.[0-9]{4} \|"
        assert_line --regexp "^\| mobilenet_v2 \| $m \| 2048 \| 1 \| 0\.[0-9]{4} \| 0\.[0-9]{4} \|"
    done
    assert_line --regexp '^\| resnet20 \| DisCo \(moco:1,disco:16\) \| 32 \| 1 \|'
    [ -s "$out/curves.png" ] && [ -s "$out/cache-1.h5" ] && [ -s "$out/cache-2.h5" ]
    grep -q '"loss_disco"' "$out/s-disco-resnet20-2048-1.log"
    grep -q '"loss_seed"' "$out/s-seed-resnet20-2048-2.log"
    # SSA: its dense term in the log; the batch ablation at 16 on seed 1, lr 0.06 x 16 / 32
    grep -q '"loss_ssa"' "$out/s-ssa-resnet20-2048-2.log"
    assert_line --regexp '^\| resnet20 \| SSA, batch 16 \(moco:1,disco:16,ssa:1\) \| 2048 \| 1 \| 0\.[0-9]{4} \|'
    run /usr/bin/python3 -c "import json, sys; print(round(next(r['lr'] for r in map(json.loads, open(sys.argv[1])) if 'lr' in r), 6))" \
        "$out/s-ssab16-resnet20-2048-1.log"
    assert_output "0.03"
    # a rerun redoes nothing
    run make -f pipelines/ssl-distill-fmnist.mk OUT="$out" LIMIT=128 TEST_LIMIT=128 BATCH=32 \
        T_ARCH=resnet20 T_HEAD=mlp:64:128 T_EPOCHS=1 S_EPOCHS=1 SEEDS="1 2" BOTTLENECK="32 2048" \
        S_METHODS="moco disco seed ssa" SSA_BATCHES=16 \
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

@test "pipelines/transfer-fmnist.mk: random/supervised/imported backbones, frozen and fine-tuned, table, picture, resume" {
    cd "$ROOT"
    out="$BATS_TEST_TMPDIR/tr"
    mkdir -p "$out"
    bin/model-init -a resnet20 --in-channels 1 --seed 5 -o "$BATS_TEST_TMPDIR/student.h5" > /dev/null
    args=(OUT="$out" CANVAS=32x32 OBJECTS=1,2 SCALE=0.6,1 TRAIN_SCENES=32 TEST_SCENES=8 SUP_LIMIT=128
          SUP_EPOCHS=1 STEPS=4 BATCH=4 HEAD_CH=8 CKPT_EVERY=2 THREADS=2 IMPORT="kd=$BATS_TEST_TMPDIR/student.h5")
    run make -s -f pipelines/transfer-fmnist.mk "${args[@]}"
    assert_success
    run cat "$out/results.md"
    assert_line --index 0 "| backbone | backbone during training | AP | AP50 | AP75 | mIoU | train time |"
    local n=2
    for b in random supervised kd; do
        for m in frozen fine-tuned; do
            assert_line --index $n --regexp "^\| $b \| $m \| [01]\.[0-9]{3} \| [01]\.[0-9]{3} \| [01]\.[0-9]{3} \| [01]\.[0-9]{3} \| [0-9]+s \|$"
            n=$((n + 1))
        done
    done
    [ "${#lines[@]}" -eq 8 ]
    # the picture: a PNG of 8 rows of three 96x96 panels
    run /usr/bin/python3 -c "import struct,sys; d=open(sys.argv[1],'rb').read(24); print(d[:8]==b'\x89PNG\r\n\x1a\n', *struct.unpack('>II', d[16:24]))" "$out/detections.png"
    assert_output "True 296 796"
    # the same schedule for every backbone: the head's checkpoints hold step 4
    for r in random-frozen supervised-finetune kd-finetune; do
        run /usr/bin/python3 -c "import h5py,sys; print(h5py.File(sys.argv[1])['train/det_momentum'].attrs['step'])" "$out/det-$r.h5.ckpt.h5"
        assert_output "4"
    done
    # a rerun redoes nothing
    run make -f pipelines/transfer-fmnist.mk "${args[@]}"
    assert_success
    refute_output --partial "detect-train"
    refute_output --partial "distill-step"
    # the masks' skip and the flip test reach detect-train and detect
    run make -s -f pipelines/transfer-fmnist.mk OUT="$BATS_TEST_TMPDIR/sk" CANVAS=32x32 TRAIN_SCENES=32 TEST_SCENES=8 \
        STEPS=4 BATCH=4 HEAD_CH=8 THREADS=2 BACKBONES=random MODES=finetune SEG_SKIP=1 DETECT_FLAGS=--flip-test \
        "$BATS_TEST_TMPDIR/sk/results.md"
    assert_success
    assert_line --regexp "^\| random \| fine-tuned \| [01]\.[0-9]{3} \|"
    /usr/bin/python3 -c "import h5py,sys; assert h5py.File(sys.argv[1]).attrs['det_seg_skip'] == 1" \
        "$BATS_TEST_TMPDIR/sk/det-random-finetune.h5"
    # FROZEN_FLAGS reach the frozen runs alone, DET_FLAGS every run
    run make -n -f pipelines/transfer-fmnist.mk OUT="$BATS_TEST_TMPDIR/ff" BACKBONES=random \
        FROZEN_FLAGS=--clip-grad=10 DET_FLAGS="--warmup 2"
    assert_success
    [ "$(grep -c 'detect-train .*--freeze-backbone --clip-grad=10 .*--warmup 2' <<< "$output")" -eq 1 ]
    [ "$(grep 'detect-train ' <<< "$output" | grep -v freeze-backbone | grep -c -- '--warmup 2')" -eq 1 ]
    [ "$(grep -c -- '--clip-grad' <<< "$output")" -eq 1 ]
    # mode refine: the fine-tuned detector trained REFINE_STEPS more from
    # --init, round 2 from round 1 (at REFINE_LR's last word), its own row,
    # every phase's time, the rounds kept (not deleted as intermediates)
    r=(OUT="$BATS_TEST_TMPDIR/rf" BACKBONES=random MODES="finetune refine" CANVAS=32x32 TRAIN_SCENES=16
       TEST_SCENES=4 STEPS=2 BATCH=2 HEAD_CH=8 REFINE_STEPS="3 2" REFINE_LR=0.005 THREADS=2)
    run make -f pipelines/transfer-fmnist.mk "${r[@]}"
    assert_success
    assert_output --partial "init=\"--init $BATS_TEST_TMPDIR/rf/det-random-finetune.h5\""
    assert_output --partial "init=\"--init $BATS_TEST_TMPDIR/rf/det-random-refine1.h5\""
    assert_output --partial "--steps 3 --batch 2 --lr 0.005"
    assert_output --partial "--steps 2 --batch 2 --lr 0.005"
    run cat "$BATS_TEST_TMPDIR/rf/results.md"
    assert_line --index 3 --regexp "^\| random \| fine-tuned, then refined \| [01]\.[0-9]{3} \| .* \| [0-9]+s \|$"
    [ "$(wc -w < "$BATS_TEST_TMPDIR/rf/det-random-refine.time")" -eq 3 ]
    cmp "$BATS_TEST_TMPDIR/rf/det-random-refine.h5" "$BATS_TEST_TMPDIR/rf/det-random-refine2.h5"
    for k in 1:3 2:2; do
        run /usr/bin/python3 -c "import h5py,sys; print(h5py.File(sys.argv[1])['train/det_momentum'].attrs['step'])" \
            "$BATS_TEST_TMPDIR/rf/det-random-refine${k%:*}.h5.ckpt.h5"
        assert_output "${k#*:}"
    done
    run make -n -f pipelines/transfer-fmnist.mk "${r[@]}"
    assert_success
    refute_output --partial "detect-train"
}

@test "scripts/transfer-table: backbones NAME_sN summarised per name and mode as mean ± std (numpy's, ddof 1)" {
    cd "$ROOT"
    d="$BATS_TEST_TMPDIR/tt"
    mkdir -p "$d"
    # three seeds of disco and two of ssa, frozen and fine-tuned, plus a plain backbone
    /usr/bin/python3 - "$d" <<'PY'
import json, sys, random
random.seed(7)
for bb in ["random", "disco_s1", "disco_s2", "disco_s3", "ssa_s1", "ssa_s2"]:
    for mode in ["frozen", "finetune"]:
        r = {k: random.random() for k in ("AP", "AP50", "AP75", "mIoU")}
        json.dump(r, open("%s/det-%s-%s-eval.json" % (sys.argv[1], bb, mode), "w"))
PY
    run /usr/bin/python3 scripts/transfer-table "$d"
    assert_success
    [ "${#lines[@]}" -eq 20 ]
    assert_line --index 14 "| backbone | backbone during training | seeds | AP | AP50 | AP75 | mIoU |"
    want=$(/usr/bin/python3 - "$d" <<'PY'
import json, sys, numpy as np
for name, seeds in (("disco", [1, 2, 3]), ("ssa", [1, 2])):
    for mode, label in (("frozen", "frozen"), ("finetune", "fine-tuned")):
        cells = []
        for k in ("AP", "AP50", "AP75", "mIoU"):
            v = np.array([json.load(open("%s/det-%s_s%d-%s-eval.json" % (sys.argv[1], name, s, mode)))[k] for s in seeds])
            cells.append("%.3f ± %.3f" % (v.mean(), v.std(ddof=1)))
        print("| %s | %s | %s | %s |" % (name, label, ",".join(map(str, seeds)), " | ".join(cells)))
PY
)
    [ "$(printf '%s\n' "${lines[@]:16:4}")" = "$want" ]
    # without NAME_sN backbones there is one table
    rm "$d"/det-*_s*-eval.json
    run /usr/bin/python3 scripts/transfer-table "$d"
    assert_success
    [ "${#lines[@]}" -eq 4 ]
}
