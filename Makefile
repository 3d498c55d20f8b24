# kdpipe — build, test, demo, bench, install.
# Sources are discovered: lib/<family>/*.c make libkd.a (lib/*.h are the public
# headers, the one include root, and the only ones installed; a family's private
# headers sit beside its sources), bin/*.c one program each,
# tests/unit/test_*.c one unit-test binary each, tests/*.bats the Bats suites.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
PKGS     = hdf5-serial libpng zlib jansson
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

OPT     ?= -O2 -march=native
WARN     = -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS  ?= $(OPT) -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -fopenmp $(WARN) $(CFLAGS) $(OPT_EXTRA) $(SAN) -Ilib $(PKG_CFLAGS) -MMD -MP
LDLIBS   = $(PKG_LIBS) -lblis -lm -lpthread $(MPI_LIBS)

# MPI is optional (kd_dist.h): with mpicc on PATH, lib/train/kd_dist.c is
# compiled against it and every program links it (the trainer and the loss
# registry call kd_dist); `make MPICC=` builds the one-process version.
MPICC   ?= $(shell command -v mpicc 2>/dev/null)
ifneq ($(MPICC),)
MPI_CFLAGS := -DKD_HAVE_MPI $(shell $(MPICC) --showme:compile 2>/dev/null)
MPI_LIBS   := $(shell $(MPICC) --showme:link 2>/dev/null)
endif
lib/train/kd_dist.o: ALL_CFLAGS += $(MPI_CFLAGS)
# its vector multiply-adds must become FMAs, which ISO C mode (-std=c11) does not contract
lib/nn/kd_conv_direct.o: ALL_CFLAGS += -ffp-contract=fast

ifeq ($(ASAN),1)
SAN = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

LIB_SRC  := $(sort $(wildcard lib/*/*.c))
LIB_OBJ  := $(LIB_SRC:.c=.o)

# Per-file optimisation: -O2 in GCC 12 vectorises only loops needing no
# runtime checks; the layer kernels' plane loops need alias and trip-count
# versioning, hence -O3 for these objects (not for kd_layers_ref.c, the
# tests' naive oracles).  OPT_EXTRA comes after $(CFLAGS), so it also holds
# under `make asan` (OPT="-O1 ..."), as the #pragma GCC optimize("O3") it
# replaces did; `make KD_O3=` (e.g. with OPT=-O0 for a debugger) drops it.
KD_O3 ?= -O3
lib/nn/kd_conv.o lib/nn/kd_conv_dw.o lib/nn/kd_conv_wino.o lib/nn/kd_bn.o lib/nn/kd_layers.o: OPT_EXTRA = $(KD_O3)
BIN_SRC  := $(sort $(wildcard bin/*.c))
PROGS    := $(BIN_SRC:.c=)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNITS    := $(UNIT_SRC:.c=)
# the LD_PRELOAD fault injector of tests/fault.bats
FAULT_SO := tests/fault/kd_fault.so

# Fuzzing (tests/fuzz/README.md): tests/fuzz/fuzz_NAME.c, one harness per
# reader.  `make fuzz` builds them with clang's libFuzzer into build/fuzz/
# and runs each for FUZZ_SECS seconds; the replay drivers build/replay/NAME
# (the same harnesses, the ordinary compiler, a main that feeds them files)
# are part of `all`, so that tests/fuzz.bats replays the seed corpus and
# every crash input under `make check` without clang.
FUZZ_SRC    := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_NAMES  := $(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRC))
FUZZ_REPLAY := $(FUZZ_NAMES:%=build/replay/%)
FUZZ_CC     ?= clang
FUZZ_SECS   ?= 30
FUZZ_SAN     = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS  = -std=c11 -D_GNU_SOURCE -fopenmp $(WARN) -Wno-unknown-pragmas -Wno-pass-failed -g -O1 $(FUZZ_SAN) -Ilib -Itests/fuzz $(PKG_CFLAGS) -MMD -MP
FUZZ_LIBOBJ := $(LIB_SRC:%.c=build/fuzz/%.o)
# bin/NAME.c's main becomes fuzz_main_NAME (NAME with - as _)
MAIN_AS      = $(if $(filter bin/%,$<),-Dmain=fuzz_main_$(subst -,_,$(notdir $(basename $<))))
# fuzz_opts runs each program's main up to the end of its option loop
OPTS_WRAP    = -Wl,--wrap=exit -Wl,--wrap=getopt_long

.PHONY: print-ldlibs all deps check check-only unit bats demo bench install asan fuzz fuzz-corpus clean

all: $(PROGS) $(UNITS) $(FAULT_SO) $(FUZZ_REPLAY) build/replay/make_corpus

lib/libkd.a: $(LIB_OBJ)
	$(AR) rcs $@ $^

%.o: %.c
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

bin/%: bin/%.c lib/libkd.a
	$(CC) $(ALL_CFLAGS) -o $@ $< lib/libkd.a $(LDLIBS)

tests/unit/%: tests/unit/%.c lib/libkd.a
	$(CC) $(ALL_CFLAGS) -o $@ $< lib/libkd.a $(LDLIBS)

# Built without the sanitizer even under ASAN=1: it is preloaded into every
# faulted run, ASan builds included, and must not bring its own runtime.
$(FAULT_SO): tests/fault/kd_fault.c
	$(CC) -std=c11 -O2 -g $(WARN) -fPIC -shared -o $@ $< -ldl

build/fuzz/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(MAIN_AS) -c -o $@ $<

build/fuzz/libkd.a: $(FUZZ_LIBOBJ)
	$(AR) rcs $@ $^

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c build/fuzz/tests/fuzz/scratch.o build/fuzz/libkd.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< build/fuzz/tests/fuzz/scratch.o \
	  $(if $(filter fuzz_opts,$(notdir $@)),$(BIN_SRC:%.c=build/fuzz/%.o) $(OPTS_WRAP)) build/fuzz/libkd.a $(LDLIBS)
build/fuzz/fuzz_opts: $(BIN_SRC:%.c=build/fuzz/%.o)

build/replay/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/fuzz $(MAIN_AS) -c -o $@ $<

build/replay/%: tests/fuzz/fuzz_%.c build/replay/tests/fuzz/replay_main.o build/replay/tests/fuzz/scratch.o lib/libkd.a
	$(CC) $(ALL_CFLAGS) -Itests/fuzz -o $@ $< build/replay/tests/fuzz/replay_main.o build/replay/tests/fuzz/scratch.o \
	  $(if $(filter opts,$(notdir $@)),$(BIN_SRC:%.c=build/replay/%.o) $(OPTS_WRAP)) lib/libkd.a $(LDLIBS)
build/replay/opts: $(BIN_SRC:%.c=build/replay/%.o)
.SECONDARY: $(FUZZ_LIBOBJ) $(BIN_SRC:%.c=build/fuzz/%.o) $(BIN_SRC:%.c=build/replay/%.o) \
  build/fuzz/tests/fuzz/scratch.o build/replay/tests/fuzz/scratch.o build/replay/tests/fuzz/replay_main.o

# the seed corpus, written by the library's own writers (committed)
build/replay/make_corpus: tests/fuzz/make_corpus.c lib/libkd.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< lib/libkd.a $(LDLIBS)
fuzz-corpus: build/replay/make_corpus
	rm -rf tests/fuzz/corpus
	build/replay/make_corpus tests/fuzz/corpus
	rm -r tests/fuzz/corpus/model # 185 KB: generated when needed (tests/fuzz/README.md)

# make fuzz FUZZ_SECS=N [FUZZ=NAME...]: each harness N seconds, at nice 19,
# on a copy of its corpus outside the tree; executions and crashes listed.
fuzz: $(addprefix build/fuzz/fuzz_,$(FUZZ_NAMES)) build/replay/make_corpus
	@FUZZ_SECS=$(FUZZ_SECS) scripts/fuzz $(or $(FUZZ),$(FUZZ_NAMES))

deps:
	@scripts/deps

# make check: install what is missing, build from scratch, run every test.
# The build runs on every core (make check and make demo are run without -j).
check: deps
	$(MAKE) clean
	$(MAKE) -j$$(nproc) all
	$(MAKE) check-only

check-only:
	@scripts/run-tests

asan: deps
	$(MAKE) clean
	$(MAKE) ASAN=1 OPT="-O1 -march=native" all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 KD_ASAN=1 scripts/run-tests
	$(MAKE) clean

demo: deps
	@$(MAKE) --no-print-directory -j$$(nproc) all
	@scripts/demo

bench: deps all
	@scripts/bench

# the link line of a program, for bench/*.sh, which build their drivers against lib/libkd.a
print-ldlibs:
	@echo $(LDLIBS)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/kdpipe \
	  $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 755 $(PROGS) $(DESTDIR)$(PREFIX)/bin
	install -m 644 lib/libkd.a $(DESTDIR)$(PREFIX)/lib
	install -m 644 lib/*.h $(DESTDIR)$(PREFIX)/include/kdpipe
	install -m 644 man/man1/*.1 $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 man/man5/*.5 $(DESTDIR)$(PREFIX)/share/man/man5

clean:
	rm -f lib/*/*.o lib/*/*.d lib/libkd.a $(PROGS) $(UNITS) bin/*.d tests/unit/*.d $(FAULT_SO)
	rm -rf build/replay build/fuzz

-include $(LIB_OBJ:.o=.d) $(wildcard $(addsuffix .d,$(addprefix build/*/,* */* */*/*)))
