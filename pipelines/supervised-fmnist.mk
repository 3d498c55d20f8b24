# Supervised training on Fashion-MNIST: the teacher of the supervised
# distillation track (METHODS.md, "Supervised knowledge distillation").
#
#   make -f pipelines/supervised-fmnist.mk
#   make -f pipelines/supervised-fmnist.mk ARCH=resnet56 EPOCHS=240
#
# Recipe as the CIFAR reference: SGD, momentum 0.9, wd 5e-4, crop 32 with
# padding 4 + flip, step decay x0.1 at 5/8, 3/4 and 7/8 of training.
# Reports the test top-1 of the classifier's own logits (linprobe --score)
# and of a linear probe and kNN on its frozen features.

KD      ?= bin/
OUT     ?= supervised-fmnist-out
FM      ?= /usr/share/datasets/fashion-mnist
LIMIT   ?=
TEST_LIMIT ?=
ARCH    ?= resnet20
SIZE    ?=
SEED    ?= 1
THREADS ?=
EPOCHS  ?= 240
BATCH   ?= 64
LR      ?= 0.05
WD      ?= 5e-4
VAL_EVERY ?= 1000

lim  = $(if $(LIMIT),--limit $(LIMIT))
tlim = $(if $(TEST_LIMIT),--limit $(TEST_LIMIT))
thr  = $(if $(THREADS),--threads $(THREADS))
# Decay points at 5/8, 3/4 and 7/8 of the epochs (150/180/210 of 240).
steps = $(shell echo $$(($(EPOCHS)*5/8)),$$(($(EPOCHS)*3/4)),$$(($(EPOCHS)*7/8)))

.PHONY: all clean
.DELETE_ON_ERROR:

all: $(OUT)/score.json $(OUT)/probe.json
	@cat $^

$(OUT)/.dir:
	mkdir -p $(OUT) && touch $@

$(OUT)/fm-train.h5: | $(OUT)/.dir
	$(KD)dataset $(FM) --split train $(lim) -o $@
$(OUT)/fm-test.h5: | $(OUT)/.dir
	$(KD)dataset $(FM) --split test $(tlim) -o $@

$(OUT)/init.h5: | $(OUT)/.dir
	$(KD)model-init --arch $(ARCH) --in-channels 1 --num-classes 10 --seed $(SEED) -o $@

$(OUT)/model.h5: $(OUT)/init.h5 $(OUT)/fm-train.h5 $(OUT)/fm-test.h5
	$(KD)augment --policy crop-flip --views 1 $(if $(SIZE),--size $(SIZE)) --pad 4 --epochs $(EPOCHS) --batch $(BATCH) \
	    --seed $(SEED) $(thr) --quiet $(OUT)/fm-train.h5 \
	  | $(KD)distill-step --method ce -m $< --lr $(LR) --momentum 0.9 --wd $(WD) \
	    --schedule step:$(steps) --epochs $(EPOCHS) --val $(OUT)/fm-test.h5 --val-every $(VAL_EVERY) \
	    --ckpt-every 5000 --seed $(SEED) $(thr) --quiet --log $(OUT)/train.log -o $@

$(OUT)/ftrain.h5: $(OUT)/model.h5 $(OUT)/fm-train.h5
	$(KD)teacher-extract -m $< --features $(OUT)/fm-train.h5 $(thr) --quiet -o $@
$(OUT)/ftest.h5: $(OUT)/model.h5 $(OUT)/fm-test.h5
	$(KD)teacher-extract -m $< --features $(OUT)/fm-test.h5 $(thr) --quiet -o $@

$(OUT)/score.json: $(OUT)/ftrain.h5 $(OUT)/ftest.h5
	$(KD)linprobe --score $^ > $@
$(OUT)/probe.json: $(OUT)/ftrain.h5 $(OUT)/ftest.h5
	$(KD)linprobe --standardize --knn 20 --seed $(SEED) $(thr) $^ > $@

clean:
	rm -rf $(OUT)
