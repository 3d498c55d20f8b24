# Transfer to detection and segmentation (issue 16): every backbone gets
# the same CenterNet-style head and segmentation head (detect-train), the
# same schedule, frozen and fine-tuned, on Fashion-MNIST scenes (dataset
# --scenes: train scenes from the train split, test scenes from the test
# split), scored on the test scenes by detect-eval: COCO AP, AP50, AP75 and
# the masks' mIoU.
#
#   make -f pipelines/transfer-fmnist.mk                       # random, supervised
#   make -f pipelines/transfer-fmnist.mk BACKBONES="random supervised moco"
#   make -f pipelines/transfer-fmnist.mk \
#       IMPORT="kd=kd-fmnist-out/s-kd-resnet20-1.h5 disco=ssl-distill-fmnist-out/s-disco-resnet20-2048-1.h5"
#
# Backbones: random (model-init ARCH), supervised (ARCH trained with CE on
# SUP_LIMIT Fashion-MNIST images, crop+flip, SUP_EPOCHS), moco (made by
# pipelines/ssl-fmnist.mk under OUT/ssl with MOCO_EPOCHS), and any model
# file named in IMPORT as NAME=PATH (distilled students of kd-fmnist.mk or
# ssl-distill-fmnist.mk), copied in as bb-NAME.h5.  Backbone names hold no '-'; NAME_sN is seed N
# of NAME (IMPORT="disco_s1=... disco_s2=..."), and results.md then adds mean +- std over the
# seeds per NAME and mode.  Every training run checkpoints and resumes from its checkpoint when
# the target is made again.  SEG_SKIP=K gives the masks a skip from backbone stage K
# (detect-train --seg-skip; resnet20's stage 1 is at stride 1); DETECT_FLAGS=--flip-test
# scores the test scenes with CenterNet's flip test.  DET_FLAGS go to every detect-train run,
# FROZEN_FLAGS to the frozen ones alone (FROZEN_FLAGS=--clip-grad=10: a heatmap head on fixed
# features can diverge, and clipping its gradient's norm stops it).  Mode refine
# (MODES="finetune refine") trains each fine-tuned detector REFINE_STEPS more from
# REFINE_LR on a fresh schedule (detect-train --init: a warm restart, as SGDR's), so a
# longer schedule reuses the first; several words (REFINE_STEPS="24000 12000"
# REFINE_LR="0.01 0.004") are several restarts, each from the last; its train time is
# every phase's.

KD       ?= bin/
OUT      ?= transfer-fmnist-out
FM       ?= /usr/share/datasets/fashion-mnist
THREADS  ?=
SEED     ?= 1
ARCH     ?= resnet20
# Scenes
CANVAS   ?= 32x32
OBJECTS  ?= 1,2
SCALE    ?= 0.6,1
TRAIN_SCENES ?= 4000
TEST_SCENES  ?= 500
# Backbones
BACKBONES ?= random supervised
IMPORT   ?=
SUP_LIMIT  ?= 10000
SUP_EPOCHS ?= 2
SUP_BATCH  ?= 128
SUP_LR     ?= 0.1
MOCO_EPOCHS ?= 5
MOCO_LIMIT  ?=
# more settings of ssl-fmnist.mk for the MoCo run (BATCH=... QUEUE=...)
MOCO_FLAGS  ?=
# The head and its schedule, the same for every backbone
STEPS    ?= 1200
BATCH    ?= 16
LR       ?= 0.02
STRIDE   ?= 4
HEAD_CH  ?= 64
SEG_SKIP ?=
DET_FLAGS ?=
FROZEN_FLAGS ?=
DETECT_FLAGS ?=
CKPT_EVERY ?= 250
MODES    ?= frozen finetune
REFINE_STEPS ?= $(STEPS)
REFINE_LR    ?= $(LR)

rounds := $(shell seq $(words $(REFINE_STEPS)))
thr   = $(if $(THREADS),--threads $(THREADS))
imp_names = $(foreach i,$(IMPORT),$(firstword $(subst =, ,$(i))))
ALL_BB = $(BACKBONES) $(imp_names)
RUNS  := $(foreach b,$(ALL_BB),$(foreach m,$(MODES),$(b)-$(m)))
mode_frozen   = --freeze-backbone $(FROZEN_FLAGS)
mode_finetune =

.PHONY: all backbones clean
.DELETE_ON_ERROR:
# Files made only by pattern chains are kept (.PRECIOUS), but no target is
# declared .SECONDARY: that would make the explicitly named results (a new
# seed's or method's scores) "intermediate", and a rerun with more runs would
# build nothing.
.PRECIOUS: $(OUT)/%-dets.h5 $(OUT)/det-%-refine.h5 $(foreach k,$(rounds),$(OUT)/det-%-refine$(k).h5)

all: $(OUT)/results.md $(OUT)/detections.png
backbones: $(foreach b,$(ALL_BB),$(OUT)/bb-$(b).h5)

$(OUT)/.dir:
	mkdir -p $(OUT) && touch $@

$(OUT)/scenes-train.h5: | $(OUT)/.dir
	$(KD)dataset $(FM) --split train --scenes $(TRAIN_SCENES) --canvas $(CANVAS) --objects $(OBJECTS) \
	    --scale $(SCALE) --seed $(SEED) $(thr) --quiet -o $@ > /dev/null
$(OUT)/scenes-test.h5: | $(OUT)/.dir
	$(KD)dataset $(FM) --split test --scenes $(TEST_SCENES) --canvas $(CANVAS) --objects $(OBJECTS) \
	    --scale $(SCALE) --seed $(SEED) $(thr) --quiet -o $@ > /dev/null
$(OUT)/fm-train.h5: | $(OUT)/.dir
	$(KD)dataset $(FM) --split train --limit $(SUP_LIMIT) -o $@ > /dev/null

$(OUT)/bb-random.h5: | $(OUT)/.dir
	$(KD)model-init --arch $(ARCH) --in-channels 1 --num-classes 10 --seed $(SEED) -o $@ > /dev/null

$(OUT)/sup-init.h5: | $(OUT)/.dir
	$(KD)model-init --arch $(ARCH) --in-channels 1 --num-classes 10 --seed $(SEED) -o $@ > /dev/null
$(OUT)/bb-supervised.h5: $(OUT)/sup-init.h5 $(OUT)/fm-train.h5
	start=$$(date +%s); \
	$(KD)augment --policy crop-flip --views 1 --pad 4 --epochs $(SUP_EPOCHS) --batch $(SUP_BATCH) \
	    --seed $(SEED) $(thr) --quiet $(OUT)/fm-train.h5 \
	  | $(KD)distill-step --method ce -m $< --lr $(SUP_LR) --wd 5e-4 --schedule cosine --epochs $(SUP_EPOCHS) \
	    --seed $(SEED) $(thr) --quiet --log $(OUT)/bb-supervised.log -o $@ \
	  && echo $$(( $$(date +%s) - start )) > $(OUT)/bb-supervised.time

$(OUT)/bb-moco.h5: | $(OUT)/.dir
	$(MAKE) -f pipelines/ssl-fmnist.mk KD=$(KD) OUT=$(OUT)/ssl FM=$(FM) ARCH=$(ARCH) SEED=$(SEED) \
	    EPOCHS=$(MOCO_EPOCHS) LIMIT=$(MOCO_LIMIT) THREADS=$(THREADS) $(MOCO_FLAGS) $(OUT)/ssl/moco.h5
	cp $(OUT)/ssl/moco.h5 $@

define import
$(OUT)/bb-$(1).h5: $(2) | $(OUT)/.dir
	cp $$< $$@
endef
$(foreach i,$(IMPORT),$(eval $(call import,$(firstword $(subst =, ,$(i))),$(word 2,$(subst =, ,$(i))))))

# det-BACKBONE-MODE: the head (and, fine-tuned, the backbone) trained
# STEPS steps, then detections and masks on the test scenes, then scores.
define run
$(OUT)/det-$(1)-$(2).h5: $(OUT)/bb-$(1).h5 $(OUT)/scenes-train.h5
	start=$$$$(date +%s); \
	if [ -f $$@.ckpt.h5 ]; then init="--resume $$@.ckpt.h5"; else init="-m $$<"; fi; \
	$(KD)detect-train $$$$init --train $(OUT)/scenes-train.h5 $$(mode_$(2)) --stride $(STRIDE) \
	    --head-channels $(HEAD_CH) --up-channels $(HEAD_CH) $(if $(SEG_SKIP),--seg-skip $(SEG_SKIP)) \
	    --steps $(STEPS) --batch $(BATCH) --lr $(LR) \
	    --checkpoint $$@.ckpt.h5 --checkpoint-every $(CKPT_EVERY) --seed $(SEED) $(DET_FLAGS) $(thr) --quiet \
	    -o $$@ >> $(OUT)/det-$(1)-$(2).log \
	  && echo $$$$(( $$$$(date +%s) - start )) >> $(OUT)/det-$(1)-$(2).time
endef
$(foreach r,$(filter-out %-refine,$(RUNS)),$(eval $(call run,$(firstword $(subst -, ,$(r))),$(lastword $(subst -, ,$(r))))))

# Refine rounds: round 1 from the fine-tuned detector, round K from round
# K-1, each a fresh schedule of its REFINE_STEPS word from its REFINE_LR word
# (the last word when there are fewer); refine is the last round.
round_lr = $(word $(if $(word $(1),$(REFINE_LR)),$(1),$(words $(REFINE_LR))),$(REFINE_LR))
define refine
$(OUT)/det-%-refine$(1).h5: $(OUT)/det-%-$(2).h5 $(OUT)/scenes-train.h5
	start=$$$$(date +%s); \
	if [ -f $$@.ckpt.h5 ]; then init="--resume $$@.ckpt.h5"; else init="--init $$<"; \
	  cat $(OUT)/det-$$*-$(2).time > $(OUT)/det-$$*-refine$(1).time; fi; \
	$(KD)detect-train $$$$init --train $(OUT)/scenes-train.h5 --stride $(STRIDE) \
	    --steps $(word $(1),$(REFINE_STEPS)) --batch $(BATCH) --lr $(call round_lr,$(1)) \
	    --checkpoint $$@.ckpt.h5 --checkpoint-every $(CKPT_EVERY) --seed $(SEED) $(DET_FLAGS) $(thr) --quiet \
	    -o $$@ >> $(OUT)/det-$$*-refine$(1).log \
	  && echo $$$$(( $$$$(date +%s) - start )) >> $(OUT)/det-$$*-refine$(1).time
endef
$(foreach k,$(rounds),$(eval $(call refine,$(k),$(if $(filter 1,$(k)),finetune,refine$(shell expr $(k) - 1)))))
$(OUT)/det-%-refine.h5: $(OUT)/det-%-refine$(words $(REFINE_STEPS)).h5
	cp $(OUT)/det-$*-refine$(words $(REFINE_STEPS)).time $(OUT)/det-$*-refine.time
	cp $< $@

$(OUT)/%-dets.h5: $(OUT)/%.h5 $(OUT)/scenes-test.h5
	$(KD)detect -m $< $(OUT)/scenes-test.h5 $(DETECT_FLAGS) $(thr) --quiet -o $@ > /dev/null
$(OUT)/%-eval.json: $(OUT)/%-dets.h5 $(OUT)/scenes-test.h5
	$(KD)detect-eval --gt $(OUT)/scenes-test.h5 --dets $< --seg $< --quiet > $@

$(OUT)/results.md: $(foreach r,$(RUNS),$(OUT)/det-$(r)-eval.json)
	/usr/bin/python3 scripts/transfer-table $(OUT) > $@
	cat $@
# The best fine-tuned run's detections on the first test scenes.
$(OUT)/detections.png: $(OUT)/results.md
	/usr/bin/python3 scripts/plot-detections $(OUT)/scenes-test.h5 \
	    $$(/usr/bin/python3 scripts/transfer-table --best $(OUT)) $@

clean:
	rm -rf $(OUT)
