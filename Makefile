# KyroDB - one non-recursive Makefile.  `make help` lists the targets.

VERSION    := 0.1.0
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR     ?= $(PREFIX)/share/man
DATADIR    ?= $(PREFIX)/share
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig

CC      ?= cc
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-missing-field-initializers -Wformat=2 -Wvla
GIT_COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# -fno-math-errno: no code reads errno after a math function, so sqrt is
# one instruction and the tools need no libm (see TOOL_LDLIBS).
CPPFLAGS_ALL := -std=c11 -D_GNU_SOURCE -Ilibkyro -MMD -MP -fno-math-errno
LDLIBS  := -l:libcpu_features.a -lxxhash -lm -pthread
# The tools run once per call from scripts and cron, so the dynamic loader
# is a large share of a one-key kyro-get: every shared object it maps
# costs page faults and system calls.  They take xxHash from its static
# archive, and libm only where they call it (the library's sqrt needs no
# errno, so it compiles to one instruction).  The tools that write keep
# libc shared, so that fault injection (libfiu, the tests' LD_PRELOAD
# shims) reaches their I/O; the two that never write link as static PIEs
# and load nothing at all (docs/DECISIONS.md).
TOOL_LDLIBS := -Wl,--as-needed -l:libcpu_features.a -l:libxxhash.a -lm -pthread

ifdef SANITIZE
CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

BUILD ?= build
LIB_SRCS := \
	libkyro/compact.c \
	libkyro/db.c \
	libkyro/delta.c \
	libkyro/err.c \
	libkyro/feed.c \
	libkyro/fsio.c \
	libkyro/hnsw.c \
	libkyro/hnsw_build.c \
	libkyro/hnsw_search.c \
	libkyro/image.c \
	libkyro/index.c \
	libkyro/manifest.c \
	libkyro/rmi.c \
	libkyro/rmi_build.c \
	libkyro/rmi_leaves.c \
	libkyro/shared.c \
	libkyro/simd.c \
	libkyro/simd_avx2.c \
	libkyro/simd_avx512.c \
	libkyro/simd_scalar.c \
	libkyro/simd_sse4.c \
	libkyro/snapshot.c \
	libkyro/snap_write.c \
	libkyro/sort.c \
	libkyro/vec_avx2.c \
	libkyro/vec_avx512.c \
	libkyro/vec_build.c \
	libkyro/vec_dist.c \
	libkyro/vec_exact.c \
	libkyro/vec_scalar.c \
	libkyro/vec_snap.c \
	libkyro/vec_sse.c \
	libkyro/vec_store.c \
	libkyro/verify.c \
	libkyro/verify_snap.c \
	libkyro/view.c \
	libkyro/wal.c \
	libkyro/writer.c
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)

# Each SIMD probe is compiled for its own instruction set; the library
# picks one at run time (cpu_features), so the rest stays portable.
$(BUILD)/libkyro/simd_scalar.o: CFLAGS += -fno-tree-vectorize
$(BUILD)/libkyro/simd_sse4.o: CFLAGS += -msse4.2 -mpopcnt
$(BUILD)/libkyro/simd_avx2.o: CFLAGS += -mavx2 -mpopcnt
$(BUILD)/libkyro/simd_avx512.o: CFLAGS += -mavx512f -mpopcnt
build-fuzz/libkyro/simd_scalar.o: FUZZ_CFLAGS += -fno-tree-vectorize
build-fuzz/libkyro/simd_sse4.o: FUZZ_CFLAGS += -msse4.2 -mpopcnt
build-fuzz/libkyro/simd_avx2.o: FUZZ_CFLAGS += -mavx2 -mpopcnt
build-fuzz/libkyro/simd_avx512.o: FUZZ_CFLAGS += -mavx512f -mpopcnt
# The distance kernels likewise (vec_dist.c picks one).
$(BUILD)/libkyro/vec_scalar.o: CFLAGS += -fno-tree-vectorize
$(BUILD)/libkyro/vec_sse.o: CFLAGS += -msse4.2
$(BUILD)/libkyro/vec_avx2.o: CFLAGS += -mavx2 -mfma
$(BUILD)/libkyro/vec_avx512.o: CFLAGS += -mavx512f
build-fuzz/libkyro/vec_scalar.o: FUZZ_CFLAGS += -fno-tree-vectorize
build-fuzz/libkyro/vec_sse.o: FUZZ_CFLAGS += -msse4.2
build-fuzz/libkyro/vec_avx2.o: FUZZ_CFLAGS += -mavx2 -mfma
build-fuzz/libkyro/vec_avx512.o: FUZZ_CFLAGS += -mavx512f
LIB      := $(BUILD)/libkyro.a

TOOLS := \
	kyro-get \
	kyro-put \
	kyro-rmi-build \
	kyro-serve \
	kyro-snapshot \
	kyro-verify \
	kyro-warmup
# Where the tools are linked: a sanitizer build puts its own elsewhere.
BIN ?= bin
BINS := $(TOOLS:%=$(BIN)/%)
CLI_OBJS := $(BUILD)/cmd/cli.o $(BUILD)/cmd/cli_vec.o

UNIT_TESTS := \
	test_commit \
	test_delta \
	test_feed \
	test_floatfmt \
	test_image \
	test_manifest \
	test_snapshot \
	test_store \
	test_vec \
	test_vecjson \
	test_vecstore \
	test_wal
UNIT_BINS := $(UNIT_TESTS:%=$(BUILD)/tests/%) $(BUILD)/tests/test_rmi

## all: build libkyro.a and the tools into bin/ (or BIN)
all: $(LIB) $(BINS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS_ALL) $(CPPFLAGS) $(WARN) $(CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJS)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && $(AR) rcs $@ $^

# The tools that never write: static PIEs (see TOOL_LDLIBS); a sanitizer's
# runtime needs the dynamic loader.
READ_TOOLS := kyro-get kyro-warmup
ifndef SANITIZE
$(addprefix $(BIN)/,$(READ_TOOLS)): TOOL_LINK := -static-pie
endif
$(BIN)/%: $(BUILD)/cmd/%.o $(CLI_OBJS) $(LIB)
	@mkdir -p $(BIN)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $(TOOL_LINK) -o $@ $^ $(TOOL_LDLIBS)

# kyro-serve is the one tool with modules of its own (cmd/serve/) and
# libraries beyond libkyro's.
SERVE_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(sort $(wildcard cmd/serve/*.c)))
$(SERVE_OBJS) $(BUILD)/cmd/kyro-serve.o: CPPFLAGS += -DKYRO_GIT_COMMIT='"$(GIT_COMMIT)"'
$(BIN)/kyro-serve: $(BUILD)/cmd/kyro-serve.o $(SERVE_OBJS) $(CLI_OBJS) $(LIB)
	@mkdir -p $(BIN)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lmicrohttpd -ljansson -lcurl -lpthread

# test_rmi brings its own main (property tests over many key sets).
$(BUILD)/tests/test_rmi: $(BUILD)/tests/unit/test_rmi.o $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# test_floatfmt and test_vecjson test modules of the daemon's.
$(BUILD)/tests/test_floatfmt: $(BUILD)/tests/unit/test_floatfmt.o $(BUILD)/tests/unit/harness.o $(BUILD)/cmd/serve/floatfmt.o $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/test_vecjson: $(BUILD)/tests/unit/test_vecjson.o $(BUILD)/tests/unit/harness.o $(BUILD)/cmd/serve/vecjson.o $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/tests/unit/harness.o $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

FUZZERS := \
	fuzz_manifest \
	fuzz_rmi \
	fuzz_snapshot \
	fuzz_wal
FUZZ_CC      ?= clang
FUZZ_CFLAGS  := -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
                -fno-sanitize-recover=all
FUZZ_SECONDS ?= 60
FUZZ_BINS    := $(FUZZERS:%=build-fuzz/%)

build-fuzz/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZCC  $<")
	$(Q)$(FUZZ_CC) $(CPPFLAGS_ALL) $(WARN) $(FUZZ_CFLAGS) -c -o $@ $<

build-fuzz/fuzz_%: build-fuzz/tests/fuzz/fuzz_%.o $(LIB_SRCS:%.c=build-fuzz/%.o)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ $^ $(LDLIBS)

## fuzz: run every libFuzzer target for FUZZ_SECONDS each (default 60)
fuzz: $(FUZZ_BINS)
	$(Q)for f in $(FUZZERS); do \
		mkdir -p build-fuzz/corpus/$$f && \
		./build-fuzz/$$f -max_total_time=$(FUZZ_SECONDS) \
			build-fuzz/corpus/$$f tests/fuzz/corpus/$${f#fuzz_} || exit 1; \
	done

## check-fuzz: replay the saved fuzz corpus (part of make test)
check-fuzz: $(FUZZ_BINS)
	$(Q)for f in $(FUZZERS); do \
		./build-fuzz/$$f tests/fuzz/corpus/$${f#fuzz_}/* >build-fuzz/$$f.log 2>&1 \
			|| { tail -30 build-fuzz/$$f.log; exit 1; }; \
		echo "ok   $$f: $$(ls tests/fuzz/corpus/$${f#fuzz_} | wc -l) inputs replayed"; \
	done

## demo: build, load a sample data set, snapshot, read it back
demo: all
	$(Q)sh scripts/demo.sh

## install: install tools, man pages, completions, kyro.h, libkyro.a, kyro.pc
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(PKGCONFIGDIR) \
		$(DESTDIR)$(DATADIR)/bash-completion/completions \
		$(DESTDIR)$(DATADIR)/zsh/vendor-completions \
		$(DESTDIR)$(DATADIR)/fish/vendor_completions.d
	install -m 755 $(BINS) $(DESTDIR)$(BINDIR)
	install -m 644 $(LIB) $(DESTDIR)$(LIBDIR)
	install -m 644 libkyro/kyro.h $(DESTDIR)$(INCLUDEDIR)
	install -m 644 $(wildcard man/*.1) $(DESTDIR)$(MANDIR)/man1
	install -m 644 man/kyro.7 $(DESTDIR)$(MANDIR)/man7
	install -m 644 $(wildcard man/*.8) $(DESTDIR)$(MANDIR)/man8
	install -m 644 $(wildcard completions/bash/*) $(DESTDIR)$(DATADIR)/bash-completion/completions
	install -m 644 completions/zsh/_kyro $(DESTDIR)$(DATADIR)/zsh/vendor-completions
	install -m 644 $(wildcard completions/fish/*.fish) $(DESTDIR)$(DATADIR)/fish/vendor_completions.d
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
		-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
		-e 's|@LIBS@|$(LDLIBS)|' \
		kyro.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/kyro.pc

## uninstall: remove what install installed
uninstall:
	rm -f $(TOOLS:%=$(DESTDIR)$(BINDIR)/%) $(DESTDIR)$(LIBDIR)/libkyro.a \
		$(DESTDIR)$(INCLUDEDIR)/kyro.h $(DESTDIR)$(PKGCONFIGDIR)/kyro.pc \
		$(DESTDIR)$(MANDIR)/man7/kyro.7 \
		\
		$(DESTDIR)$(DATADIR)/zsh/vendor-completions/_kyro
	rm -f $(patsubst completions/bash/%,$(DESTDIR)$(DATADIR)/bash-completion/completions/%,$(wildcard completions/bash/*))
	rm -f $(patsubst completions/fish/%,$(DESTDIR)$(DATADIR)/fish/vendor_completions.d/%,$(wildcard completions/fish/*.fish))
	rm -f $(patsubst man/%,$(DESTDIR)$(MANDIR)/man1/%,$(wildcard man/*.1))
	rm -f $(patsubst man/%,$(DESTDIR)$(MANDIR)/man8/%,$(wildcard man/*.8))

## bench: every benchmark; CSV and PNG in bench/results/, summary in bench/README.md
bench: bench-store bench-rmi bench-snapshot bench-open

bench-deps:
	$(Q)sh tests/deps.sh liblmdb-dev gnuplot-nox hyperfine

## bench-store: kyro-put/get/snapshot and one-key opens against LMDB
bench-store: all bench-deps
	$(Q)sh bench/store/run.sh

## bench-open: kyro-get of one key against LMDB at 200k..100M keys (OPEN_NS, OPEN_BEFORE)
bench-open: all
	$(Q)bash bench/open/run.sh

## bench-snapshot: kyro-snapshot at 10M and 100M keys against dd of the same bytes
bench-snapshot: all
	$(Q)bash bench/snapshot/run.sh

## bench-rmi: the learned index against binary search, Eytzinger and LMDB
bench-rmi: bench-deps all
	$(Q)sh bench/run-rmi.sh

## bench-vector: the vector index against hnswlib and FAISS (Fashion-MNIST, 1M x 128)
bench-vector: all
	$(Q)sh tests/deps.sh libhnswlib-dev python3-faiss python3-numpy dataset-fashion-mnist gnuplot-nox g++
	$(Q)bash bench/vector/run.sh

## bench-serve: kyro-serve under wrk against nginx and redis
bench-serve: all
	$(Q)sh tests/deps.sh wrk nginx-light redis-server
	$(Q)sh bench/serve/run.sh

## bench-serve-vector: /v1/vector/search through kyro-serve against the same searches in process
bench-serve-vector: all
	$(Q)sh tests/deps.sh wrk time python3-numpy dataset-fashion-mnist
	$(Q)sh bench/serve/vector.sh

## bench-feed: 100 SSE subscribers at 10,000 commits/s against Redis pub/sub
bench-feed: all
	$(Q)sh tests/deps.sh redis-server gnuplot
	$(Q)sh bench/feed/run.sh

## bench-replica: replica lag at 10,000 writes/s and catch-up from 1M behind, against redis-server --replicaof
bench-replica: all
	$(Q)sh tests/deps.sh redis-server redis-tools
	$(Q)sh bench/feed/replica.sh

## bench-replica-crash: the replica crash test with 200 rounds of SIGKILL (REPLICA_CRASH_ROUNDS)
bench-replica-crash: all
	$(Q)REPLICA_CRASH_ROUNDS=$${REPLICA_CRASH_ROUNDS:-200} bats -f 'replica crash test' tests/bats/88-replica.bats

## deps: install missing Debian packages (as root), or print the apt-get line
deps:
	$(Q)sh tests/deps.sh

## check-unit: build and run the C unit tests
check-unit: $(UNIT_BINS)
	$(Q)sh tests/run-unit.sh $(UNIT_BINS)

## check-bats: run the command-line tests (bats)
check-bats: all
	$(Q)bats --jobs 1 tests/bats

## check-symbols: libkyro.a defines no global symbol but kyro.h's and kyro__ ones
check-symbols: $(LIB)
	$(Q)sh tests/check-symbols.sh $(LIB) libkyro/kyro.h

## check-asan: the unit tests under AddressSanitizer and UBSan
check-asan:
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan SANITIZE=address,undefined CC=$(CC) check-unit

# The damage sweep drives the tools only; it does not link libkyro.
SWEEP_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(sort $(wildcard tests/damage/*.c)))
$(BUILD)/tests/damage/sweep: $(SWEEP_OBJS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^

DAMAGE_TOOLS := kyro-get kyro-put kyro-rmi-build kyro-snapshot kyro-verify
DAMAGE_ASAN_EVERY ?= 89
# More options for both runs, e.g. DAMAGE_ARGS='--file LOCK' (see
# tests/damage/README.md).
DAMAGE_ARGS ?=

## check-damage: flip every byte of a small store's files; then a sample under ASan and UBSan
check-damage: all $(BUILD)/tests/damage/sweep
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan BIN=build-asan/bin \
		SANITIZE=address,undefined CC=$(CC) $(DAMAGE_TOOLS:%=build-asan/bin/%)
	$(Q)status=0; \
	$(BUILD)/tests/damage/sweep --bin $(BIN) $(DAMAGE_ARGS) || status=1; \
	echo "damage sweep with tools built with ASan and UBSan, one flip in $(DAMAGE_ASAN_EVERY):"; \
	$(BUILD)/tests/damage/sweep --bin build-asan/bin --every $(DAMAGE_ASAN_EVERY) --timeout 30 \
		$(DAMAGE_ARGS) || status=1; \
	exit $$status

## test: install what is missing, build, and run every test
test: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory check-symbols
	$(Q)$(MAKE) --no-print-directory check-unit
	$(Q)$(MAKE) --no-print-directory check-asan
	$(Q)$(MAKE) --no-print-directory check-fuzz
	$(Q)$(MAKE) --no-print-directory check-bats
	$(Q)$(MAKE) --no-print-directory check-damage

## clean: remove build outputs
clean:
	rm -rf $(BUILD) build-asan build-fuzz bin

## help: list the targets
help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST)

.PHONY: all bench bench-deps bench-feed bench-replica bench-replica-crash bench-serve-vector bench-open bench-vector bench-snapshot bench-store bench-rmi demo install uninstall deps check-unit check-symbols check-bats check-asan check-damage check-fuzz fuzz test clean help
.SECONDARY:

-include $(shell find $(BUILD) build-fuzz -name '*.d' 2>/dev/null)
