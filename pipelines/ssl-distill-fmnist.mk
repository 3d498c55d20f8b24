# Self-supervised distillation on Fashion-MNIST (issue 13): a MoCo v2
# teacher clearly larger than its students, one teacher cache per student
# seed, then students trained the same number of epochs by MoCo alone, DisCo
# and SEED, probed linearly and by kNN-20 on the full test set.
#
#   make -f pipelines/ssl-distill-fmnist.mk teacher     # the teacher only
#   make -f pipelines/ssl-distill-fmnist.mk             # everything
#   make -f pipelines/ssl-distill-fmnist.mk KD=/opt/kdpipe/bin/ OUT=run2
#
# Targets are files: a rerun redoes only what changed.  Every training run
# checkpoints (CKPT_EVERY steps) and an interrupted run resumes from its
# checkpoint when the target is made again (the augment stream is
# deterministic in its seed, and distill-step skips the frames it has
# already trained on).  Sized for a 2-core machine: LIMIT training images,
# the full test set.

KD       ?= bin/
OUT      ?= ssl-distill-out
FM       ?= /usr/share/datasets/fashion-mnist
LIMIT    ?= 20000
THREADS  ?=
BATCH    ?= 128
CKPT_EVERY ?= 100
# MoCo v2 as adapted to 28x28 images in pipelines/ssl-fmnist.mk (no blur,
# crops from 0.3, BN in the head, wd 5e-4, tau 0.1, m 0.99).
MOCO_AUG ?= --crop-scale 0.3,1 --blur-p 0
LR       ?= 0.06
TAU      ?= 0.1
MOCO_M   ?= 0.99
QUEUE    ?= 4096
MOCO_WD  ?= 5e-4
VAL_LIMIT ?= 2000
BANK_LIMIT ?= 10000
# Teacher: resnet8x4 (1.2M parameters, 4x resnet20's widths) with a
# 2048-wide head, trained longer than the students.
T_ARCH   ?= resnet8x4
T_HEAD   ?= mlp:2048:128:bn
T_EPOCHS ?= 12
T_SEED   ?= 1
# Students
S_ARCH   ?= resnet20
S_HEAD   ?= mlp:2048:128:bn
S_EPOCHS ?= 5
SEEDS    ?= 1 2 3
DISCO_W  ?= 32
KNN      ?= 20

lim  = $(if $(LIMIT),--limit $(LIMIT))
thr  = $(if $(THREADS),--threads $(THREADS))
tval = --val $(OUT)/fm-test.h5 --knn-bank $(OUT)/fm-train.h5 --val-limit $(VAL_LIMIT) --knn-bank-limit $(BANK_LIMIT)

.PHONY: all teacher clean
.DELETE_ON_ERROR:
.SECONDARY:

all: $(OUT)/results.md
teacher: $(OUT)/teacher-probe.json

$(OUT)/.dir:
	mkdir -p $(OUT) && touch $@

$(OUT)/fm-train.h5: | $(OUT)/.dir
	$(KD)dataset $(FM) --split train $(lim) -o $@
$(OUT)/fm-test.h5: | $(OUT)/.dir
	$(KD)dataset $(FM) --split test -o $@

$(OUT)/teacher0.h5: | $(OUT)/.dir
	$(KD)model-init --arch $(T_ARCH) --in-channels 1 --head $(T_HEAD) --seed $(T_SEED) -o $@

# The teacher: MoCo v2, resumed from its checkpoint after an interruption.
$(OUT)/teacher.h5: $(OUT)/teacher0.h5 $(OUT)/fm-train.h5 $(OUT)/fm-test.h5
	start=$$(date +%s); \
	if [ -f $@.ckpt.h5 ]; then init="--resume $@.ckpt.h5"; else init="-m $<"; fi; \
	log=$(OUT)/teacher.log; [ -f $$log ] && log=$(OUT)/teacher.$$start.log; \
	$(KD)augment --policy mocov2 $(MOCO_AUG) --views 2 --epochs $(T_EPOCHS) --batch $(BATCH) \
	    --drop-last --seed $(T_SEED) $(thr) --quiet $(OUT)/fm-train.h5 \
	  | $(KD)distill-step --method moco $$init --queue $(QUEUE) --tau $(TAU) --moco-m $(MOCO_M) --lr $(LR) \
	    --wd $(MOCO_WD) $(tval) --val-every $$(( $(LIMIT) / $(BATCH) )) --ckpt-every $(CKPT_EVERY) \
	    --seed $(T_SEED) $(thr) --quiet --log $$log -o $@ \
	  && echo $$(( $$(date +%s) - start )) >> $(OUT)/teacher.time

# Frozen features (eval mode) and probes, for the teacher and every student.
$(OUT)/%-ftrain.h5: $(OUT)/%.h5 $(OUT)/fm-train.h5
	$(KD)teacher-extract -m $< --features $(OUT)/fm-train.h5 $(thr) --quiet -o $@
$(OUT)/%-ftest.h5: $(OUT)/%.h5 $(OUT)/fm-test.h5
	$(KD)teacher-extract -m $< --features $(OUT)/fm-test.h5 $(thr) --quiet -o $@
$(OUT)/%-probe.json: $(OUT)/%-ftrain.h5 $(OUT)/%-ftest.h5
	$(KD)linprobe --standardize --knn $(KNN) $(thr) $^ > $@

clean:
	rm -rf $(OUT)
