# Supervised distillation on Fashion-MNIST (issue 14): one supervised
# teacher trained once on many labelled images, its outputs cached once per
# student seed, then students trained the same epochs alone (CE), with KD,
# DKD, CRD and MSD, over SEEDS, scored by the test top-1 of their own
# classifier on the full test set (last epoch).
#
#   make -f pipelines/kd-fmnist.mk teacher      # the teacher only
#   make -f pipelines/kd-fmnist.mk              # everything
#   make -f pipelines/kd-fmnist.mk LIMIT=60000 S_EPOCHS=30 OUT=full
#
# The regime: Fashion-MNIST's full training set is easy for every student,
# so by default the students see only the first LIMIT labelled images (the
# teacher saw T_LIMIT), where the student alone is clearly below its
# teacher and the methods differ.  Targets are files: a rerun redoes only
# what changed; every training run checkpoints and resumes from its
# checkpoint when the target is made again.

KD       ?= bin/
OUT      ?= kd-fmnist-out
FM       ?= /usr/share/datasets/fashion-mnist
THREADS  ?=
TEST_LIMIT ?=
BATCH    ?= 64
WD       ?= 5e-4
CKPT_EVERY ?= 200
# Teacher: wrn_40_2 (2.2M parameters), CE with crop+flip, cosine schedule.
T_ARCH   ?= wrn_40_2
T_LIMIT  ?= 12000
T_EPOCHS ?= 2
T_LR     ?= 0.05
T_SEED   ?= 1
# Students: homogeneous pairs resnet8x4 and wrn_16_2, heterogeneous
# mobilenet_v2 (lr 0.01 as in the CIFAR recipe).
LIMIT    ?= 1000
S_EPOCHS ?= 6
ARCHS    ?= resnet8x4 wrn_16_2 mobilenet_v2
METHODS  ?= ce kd dkd crd msd
SEEDS    ?= 1 2 3
LR       ?= 0.05
LR_mobilenet_v2 ?= 0.01
# Method settings (METHODS.md; DKD's warm-up scaled to the short schedule).
KD_T     ?= 4
DKD_WARMUP ?= 1
CRD_K    ?= 512
MSD_W    ?= 1

thr  = $(if $(THREADS),--threads $(THREADS))
lr   = $(if $(LR_$(1)),$(LR_$(1)),$(LR))

loss_ce  = --loss ce
loss_kd  = --loss ce:0.1,kd:0.9 --kd-t $(KD_T)
loss_dkd = --loss ce:1,dkd:1 --dkd-warmup $(DKD_WARMUP)
loss_crd = --loss ce:1,crd:0.8 --crd-k $(CRD_K) --crd-data $(OUT)/fm-train-s.h5
loss_msd = --loss ce:0.1,kd:0.9,msd:$(MSD_W) --kd-t $(KD_T)
# What each method needs from the teacher, after the cache: MSD the CAM
# pooled into region logits by aggregate.
tside_ce  =
tside_kd  = | $(KD)teacher-extract --from-cache $(OUT)/cache-$(2).h5 --quiet
tside_dkd = $(tside_kd)
tside_crd = $(tside_kd)
tside_msd = $(tside_kd) | $(KD)aggregate --in t.cam0 --scales 1,2,4 --quiet

sstream = $(KD)augment --policy crop-flip --views 1 --pad 4 --epochs $(S_EPOCHS) --batch $(BATCH) \
	    --seed $(1) $(thr) --quiet $(OUT)/fm-train-s.h5

STUDENTS := $(foreach a,$(ARCHS),$(foreach m,$(METHODS),$(foreach s,$(SEEDS),s-$(m)-$(a)-$(s))))

.PHONY: all teacher students clean
.DELETE_ON_ERROR:
# Files made only by pattern chains are kept (.PRECIOUS), but no target is
# declared .SECONDARY: that would make the explicitly named results (a new
# seed's or method's scores) "intermediate", and a rerun with more runs would
# build nothing.
.PRECIOUS: $(OUT)/%-ftest.h5

all: $(OUT)/results.md $(OUT)/bars.png
teacher: $(OUT)/teacher-score.json

$(OUT)/.dir:
	mkdir -p $(OUT) && touch $@

$(OUT)/fm-train.h5: | $(OUT)/.dir
	$(KD)dataset $(FM) --split train --limit $(T_LIMIT) -o $@
$(OUT)/fm-train-s.h5: | $(OUT)/.dir
	$(KD)dataset $(FM) --split train --limit $(LIMIT) -o $@
$(OUT)/fm-test.h5: | $(OUT)/.dir
	$(KD)dataset $(FM) --split test $(if $(TEST_LIMIT),--limit $(TEST_LIMIT)) -o $@

$(OUT)/teacher0.h5: | $(OUT)/.dir
	$(KD)model-init --arch $(T_ARCH) --in-channels 1 --num-classes 10 --seed $(T_SEED) -o $@

$(OUT)/teacher.h5: $(OUT)/teacher0.h5 $(OUT)/fm-train.h5
	start=$$(date +%s); \
	if [ -f $@.ckpt.h5 ]; then init="--resume $@.ckpt.h5"; else init="-m $<"; fi; \
	log=$(OUT)/teacher.log; [ -f $$log ] && log=$(OUT)/teacher.$$start.log; \
	$(KD)augment --policy crop-flip --views 1 --pad 4 --epochs $(T_EPOCHS) --batch $(BATCH) \
	    --seed $(T_SEED) $(thr) --quiet $(OUT)/fm-train.h5 \
	  | $(KD)distill-step --loss ce $$init --lr $(T_LR) --wd $(WD) --ckpt-every $(CKPT_EVERY) \
	    --seed $(T_SEED) $(thr) --quiet --log $$log -o $@ \
	  && echo $$(( $$(date +%s) - start )) >> $(OUT)/teacher.time

# The teacher runs once per student seed, on that seed's student stream;
# every student of the seed reads the stored outputs back.
$(OUT)/cache-%.h5: $(OUT)/teacher.h5 $(OUT)/fm-train-s.h5
	$(call sstream,$*) | $(KD)teacher-extract -m $< --cam --save-cache $@ $(thr) --quiet > /dev/null

$(OUT)/init-%.h5: | $(OUT)/.dir
	a=$$(echo $* | sed 's/-[0-9]*$$//'); sd=$$(echo $* | sed 's/.*-//'); \
	$(KD)model-init --arch $$a --in-channels 1 --num-classes 10 --seed $$sd -o $@

# s-METHOD-ARCH-SEED: from init-ARCH-SEED on the seed's stream.
define student
$(OUT)/s-$(1)-$(2)-$(3).h5: $(OUT)/init-$(2)-$(3).h5 $(OUT)/fm-train-s.h5 \
    $(if $(filter ce,$(1)),,$(OUT)/cache-$(3).h5)
	start=$$$$(date +%s); \
	if [ -f $$@.ckpt.h5 ]; then init="--resume $$@.ckpt.h5"; else init="-m $$<"; fi; \
	log=$(OUT)/s-$(1)-$(2)-$(3).log; [ -f $$$$log ] && log=$$$$log.$$$$start; \
	$$(call sstream,$(3)) $$(call tside_$(1),$(2),$(3)) \
	  | $(KD)distill-step $$(loss_$(1)) $$$$init --lr $$(call lr,$(2)) --wd $(WD) \
	    --ckpt-every $(CKPT_EVERY) --seed $(3) $(thr) --quiet --log $$$$log -o $$@ \
	  && echo $$$$(( $$$$(date +%s) - start )) >> $(OUT)/s-$(1)-$(2)-$(3).time
endef
$(foreach st,$(STUDENTS),$(eval $(call student,$(word 2,$(subst -, ,$(st))),$(word 3,$(subst -, ,$(st))),$(word 4,$(subst -, ,$(st))))))

students: $(foreach st,$(STUDENTS),$(OUT)/$(st)-score.json)

# The classifier's own test top-1 (eval mode, full test set).
$(OUT)/%-ftest.h5: $(OUT)/%.h5 $(OUT)/fm-test.h5
	$(KD)teacher-extract -m $< --features $(OUT)/fm-test.h5 $(thr) --quiet -o $@
$(OUT)/%-score.json: $(OUT)/%-ftest.h5
	$(KD)linprobe --score $< $< > $@

$(OUT)/results.md: $(OUT)/teacher-score.json $(foreach st,$(STUDENTS),$(OUT)/$(st)-score.json)
	/usr/bin/python3 scripts/kd-table $(OUT) > $@
	cat $@
$(OUT)/bars.png: $(OUT)/results.md
	/usr/bin/python3 scripts/plot-kd-bars $(OUT) $@

clean:
	rm -rf $(OUT)
