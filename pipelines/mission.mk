# The whole mission on Fashion-MNIST: pretrain -> distil -> probe ->
# transfer, every track, each its own pipeline under OUT:
#   OUT/ssl       pipelines/ssl-distill-fmnist.mk: a MoCo v2 teacher; students
#                 by MoCo alone and DisCo (and SEED at full length), linear
#                 probe and kNN-20
#   OUT/kd        pipelines/kd-fmnist.mk: a supervised teacher; students
#                 alone, KD and MSD (and DKD, CRD at full length), test top-1
#   OUT/transfer  pipelines/transfer-fmnist.mk: detection and segmentation
#                 transfer of the self-supervised students (and random init)
# then OUT/results.md (the three tables with mean +- std over the seeds, the
# exact commands, the CPU, the wall time of each stage), OUT/bars.png and
# OUT/curves.png.
#
#   make -f pipelines/mission.mk                  # full length, 3 seeds: hours
#   make -j2 -f pipelines/mission.mk THREADS=1    # the two teachers' tracks side by side
#   scripts/demo                                  # the same at demo size (make demo)
#
# Each track's settings pass through as SSL_FLAGS, KD_FLAGS and TR_FLAGS
# (variables of its own pipeline); a rerun redoes only what changed, and
# interrupted training resumes from its checkpoints.

KD       ?= bin/
OUT      ?= mission-out
THREADS  ?=
SEEDS    ?= 1 2 3
SSL_FLAGS ?=
KD_FLAGS ?=
TR_FLAGS ?= MODES="frozen finetune"
# the frozen transfer runs' own flags (a heatmap head on fixed features can
# diverge; clipping its gradient's norm stops it), apart from TR_FLAGS so
# that setting those keeps it
TR_FROZEN ?= --clip-grad=10
S_ARCH   ?= resnet20

SUB  = $(MAKE) --no-print-directory
com  = KD=$(KD) THREADS=$(THREADS) SEEDS="$(SEEDS)"
ssl_cmd = $(SUB) -f pipelines/ssl-distill-fmnist.mk OUT=$(OUT)/ssl $(com) S_ARCH=$(S_ARCH) $(SSL_FLAGS)
kd_cmd  = $(SUB) -f pipelines/kd-fmnist.mk OUT=$(OUT)/kd $(com) $(KD_FLAGS)
S1   = $(firstword $(SEEDS))
# (named moco_alone and disco: transfer-fmnist.mk's own "moco" is its MoCo-only pipeline)
tr_import = moco_alone=$(OUT)/ssl/s-moco-$(S_ARCH)-2048-$(S1).h5 disco=$(OUT)/ssl/s-disco-$(S_ARCH)-2048-$(S1).h5
tr_cmd  = $(SUB) -f pipelines/transfer-fmnist.mk OUT=$(OUT)/transfer KD=$(KD) THREADS=$(THREADS) ARCH=$(S_ARCH) \
	    SEED=$(S1) BACKBONES=random IMPORT="$(tr_import)" FROZEN_FLAGS="$(TR_FROZEN)" $(TR_FLAGS)

# stage NAME, COMMAND: run it unless its pipeline is up to date (the
# sub-pipeline decides what is out of date), log its command line and the
# wall time of the run that did the work.  '+': the sub-make shares the
# job slots of make -j.
define stage
	@mkdir -p $(OUT)
	@echo "mission: stage $(1): started $$(date -u +%H:%M:%S)" >&2
	@echo '$(2)' > $(OUT)/stage-$(1).cmd
	@+if $(2) -q > /dev/null 2>&1; then echo "mission: stage $(1): up to date" >&2; else \
	  start=$$(date +%s); $(2) && echo $$(( $$(date +%s) - start )) > $(OUT)/stage-$(1).time && \
	  echo "mission: stage $(1): done in $$(cat $(OUT)/stage-$(1).time)s" >&2; fi
endef

.PHONY: all ssl kd transfer clean
all: $(OUT)/results.md $(OUT)/bars.png $(OUT)/curves.png

ssl:
	$(call stage,ssl,$(ssl_cmd) all)
kd:
	$(call stage,kd,$(kd_cmd) all)
transfer: ssl
	$(call stage,transfer,$(tr_cmd) all)

$(OUT)/results.md: ssl kd transfer
	/usr/bin/python3 scripts/mission-table $(OUT) > $@.tmp && mv $@.tmp $@
	cat $@
$(OUT)/bars.png: $(OUT)/results.md
	/usr/bin/python3 scripts/plot-mission $(OUT) bars $@
$(OUT)/curves.png: $(OUT)/results.md
	/usr/bin/python3 scripts/plot-mission $(OUT) curves $@

clean:
	rm -rf $(OUT)
