# kekfs — `make demo` and `make test` work on a fresh Debian 12 (they install what is missing).

CC      ?= gcc
ifeq ($(SANITIZE),1)
BUILD   ?= build-san
else
BUILD   ?= build
endif
PKGS    := fuse3 libsodium openssl libxxhash
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -Wall -Wextra -Werror \
	   -Wshadow -Wstrict-prototypes -fstack-protector-strong -D_FORTIFY_SOURCE=2
ifeq ($(SANITIZE),1)
CFLAGS  += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
endif

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) p11-kit-1 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread

CRYPTO_SRC  := crypto/secmem.c crypto/aead.c crypto/kdf.c crypto/keywrap.c crypto/rsa_wrap.c
BACKING_SRC := backing/backing.c backing/atomic_file.c
FORMAT_SRC  := format/wrapslot.c format/volume.c format/header.c format/chunk.c \
	       format/names.c format/namedir.c format/objcrypt.c format/linktarget.c
KEYRING_SRC := keyring/keyring.c keyring/keyring_file.c keyring/kekwrap.c keyring/audit.c keyring/pkcs11_slot.c \
	       keyring/hoststate.c
VOLUME_SRC  := volume/filekey.c volume/namekey.c volume/fileio.c volume/log.c \
	       volume/inode_table.c volume/rangelock.c volume/parallel.c volume/walk.c \
	       volume/rotation.c volume/census.c volume/shred.c volume/redata.c volume/fsck.c \
	       volume/volume_lock.c volume/journal_mac.c volume/status.c volume/control_socket.c \
	       volume/holes.c
FUSE_SRC    := fs/fuse_ops.c fs/ops_attr.c fs/ops_names.c fs/ops_file.c fs/ops_copy.c fs/ops_dir.c \
	       fs/ops_xattr.c fs/session.c fs/spacewatch.c fs/control.c fs/fuse_version.c
CLI_SRC     := cli/main.c cli/secret.c cli/unlock.c cli/mounts.c cli/cmd_init.c \
	       cli/cmd_mount.c cli/cmd_keys.c cli/notify.c cli/keysource.c cli/mount_helper.c \
	       cli/cmd_path.c cli/cmd_shred.c cli/target.c cli/cmd_redata.c cli/spawn.c \
	       cli/kms.c cli/extopts.c cli/cmd_token.c cli/cmd_fsck.c cli/progress.c \
	       cli/control_client.c cli/keys_backup.c cli/cmd_remount.c cli/version.c
LIB_SRC     := $(CRYPTO_SRC) $(BACKING_SRC) $(FORMAT_SRC) $(KEYRING_SRC) $(VOLUME_SRC)
UNIT_SRC    := $(wildcard tests/unit/test_*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
APP_OBJ  := $(FUSE_SRC:%.c=$(BUILD)/%.o) $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/test_%.c=$(BUILD)/tests/unit_%)

.PHONY: all deps test demo bench bench-names cipher-speed format clean install fuzz fuzz-build
all: $(BUILD)/kekfs $(UNIT_BIN)

deps:
	@./tools/install-deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/kekfs: $(LIB_OBJ) $(APP_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/tests/unit_%: tests/unit/test_%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $^ $(LDFLAGS) $(PKG_LIBS) -lcmocka

SAN_LOGS := $(abspath $(BUILD))/sanitizer-logs
ifeq ($(SANITIZE),1)
TEST_ENV := KEKFS_SANITIZER_LOGS=$(SAN_LOGS) \
	    ASAN_OPTIONS=log_path=$(SAN_LOGS)/asan:detect_leaks=1 \
	    UBSAN_OPTIONS=log_path=$(SAN_LOGS)/ubsan:print_stacktrace=1
endif

# Plain `make test` also builds build-san/ (one build after the other, never racing) and runs
# its unit tests and these mount-level tests under ASan+UBSan; any report fails the run.
SAN_TESTS := test_basic.test_file_sizes_roundtrip test_basic.test_overwrite_within_and_across \
	     test_basic.test_truncate_grow_shrink test_basic.test_sparse_file_holes \
	     test_basic.test_rename_variants test_basic.test_hard_links test_basic.test_user_xattrs \
	     test_basic.test_direct_io_writers_share_chunks_with_readers \
	     test_names.test_name_lengths test_rotation.test_online_rotation_under_load \
	     test_shred.test_shred_open_file test_shred.test_shred_hard_links \
	     test_soak.test_soak test_faults.test_disk_full test_crash.test_sigkill_keeps
ifeq ($(SANITIZE),1)
SAN_PASS :=
else
SAN_PASS := --sanitized build-san/kekfs $(SAN_TESTS:%=--san-k %)
endif

test: deps
	@$(MAKE) --no-print-directory all
ifneq ($(SANITIZE),1)
	@$(MAKE) --no-print-directory SANITIZE=1 BUILD=build-san all
endif
	@$(MAKE) --no-print-directory fuzz-build
	@rm -rf $(SAN_LOGS) && mkdir -p $(SAN_LOGS)
	@$(TEST_ENV) python3 tests/run_tests.py --kekfs $(BUILD)/kekfs $(SAN_PASS)

demo: deps
	@$(MAKE) --no-print-directory all
	@./tools/demo.sh $(BUILD)/kekfs

# libFuzzer harnesses (tests/fuzz/fuzz_*.c), built with clang, ASan and UBSan into
# build-fuzz/. `make test` replays tests/fuzz/regressions/ and runs each harness for
# FUZZ_TEST_SECONDS (5); `make fuzz` runs each for FUZZ_SECONDS. Without a clang that links
# -fsanitize=fuzzer, build-fuzz/skipped says why and the fuzz tests count as skipped.
FUZZ_BUILD   := build-fuzz
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   := -std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -g -O1 -Wall -Wextra -Werror \
		-fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN     := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_PROBE    = echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { return d && n; }' | \
		$(FUZZ_CC) -x c -fsanitize=fuzzer,address - -o /dev/null 2>/dev/null

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_common.h $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer $(PKG_CFLAGS) \
		-DFUZZ_FIXTURE='"$(abspath tests/fuzz/fixture)"' -o $@ $< $(FUZZ_LIB_OBJ) $(PKG_LIBS)

fuzz-build:
	@mkdir -p $(FUZZ_BUILD) && rm -f $(FUZZ_BUILD)/skipped
	@if $(FUZZ_PROBE); then $(MAKE) --no-print-directory $(FUZZ_BIN); else \
		echo "$(FUZZ_CC) cannot link -fsanitize=fuzzer (install clang and libclang-rt-14-dev)" \
		> $(FUZZ_BUILD)/skipped; cat $(FUZZ_BUILD)/skipped; fi

fuzz: fuzz-build
	@test ! -f $(FUZZ_BUILD)/skipped || exit 1
	@for b in $(FUZZ_BIN); do n=$${b##*/fuzz_}; \
		mkdir -p $(FUZZ_BUILD)/corpus/$$n $(FUZZ_BUILD)/crashes || exit 1; \
		echo "fuzz_$$n: $(FUZZ_SECONDS) s"; \
		$$b -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
			-artifact_prefix=$(FUZZ_BUILD)/crashes/$$n- \
			$(FUZZ_BUILD)/corpus/$$n tests/fuzz/corpus/$$n > $(FUZZ_BUILD)/$$n.log 2>&1; \
		rc=$$?; grep -E '^(stat::number_of_executed_units|==[0-9]+==|SUMMARY|Test unit)' \
			$(FUZZ_BUILD)/$$n.log; test $$rc -eq 0 || exit 1; done

# The side-by-side benchmark (issue 7); never part of `make test`. BENCH_SCALE=0.25 for a
# quick run; see tools/bench.py for the other knobs.
bench: deps
	@$(MAKE) --no-print-directory $(BUILD)/kekfs
	@for p in fio gocryptfs securefs rsync; do command -v $$p >/dev/null || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$p >/dev/null || exit 1; done
	@python3 tools/bench.py $(BUILD)/kekfs

# What encrypted names cost on small files against --plaintext-names (issue 3); a section of
# docs/BENCHMARKS.md. NAMES_BENCH_REPS, NAMES_BENCH_FILES: see tools/names_bench.py.
bench-names: deps
	@$(MAKE) --no-print-directory $(BUILD)/kekfs
	@python3 tools/names_bench.py $(BUILD)/kekfs

cipher-speed: $(BUILD)/cipher_speed
	@$(BUILD)/cipher_speed

$(BUILD)/cipher_speed: tools/cipher_speed.c $(LIB_OBJ)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $^ $(LDFLAGS) $(PKG_LIBS)

# make install [PREFIX=/usr/local] [DESTDIR=...]: the binary and the KMS plugins, mount.kekfs
# in /sbin (where mount(8) looks for helpers), man pages, the systemd template unit, and example units.
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SBINDIR    ?= /sbin
MANDIR     ?= $(PREFIX)/share/man
UNITDIR    ?= $(PREFIX)/lib/systemd/system
EXAMPLEDIR ?= $(PREFIX)/share/doc/kekfs/examples
SYSCONFDIR ?= /etc
SUBST       = sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g'

install: $(BUILD)/kekfs
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(EXAMPLEDIR)
	install -m 0755 $(BUILD)/kekfs $(DESTDIR)$(BINDIR)/kekfs
	install -m 0755 mount-helpers/kekfs-kms-clevis mount-helpers/kekfs-kms-vault $(DESTDIR)$(BINDIR)/
	ln -sf $(BINDIR)/kekfs $(DESTDIR)$(SBINDIR)/mount.kekfs
	install -m 0644 docs/man/kekfs.1 $(DESTDIR)$(MANDIR)/man1/kekfs.1
	install -m 0644 docs/man/mount.kekfs.8 $(DESTDIR)$(MANDIR)/man8/mount.kekfs.8
	$(SUBST) mount-helpers/kekfs@.service.in > $(DESTDIR)$(UNITDIR)/kekfs@.service
	$(SUBST) mount-helpers/srv-vault.mount.in > $(DESTDIR)$(EXAMPLEDIR)/srv-vault.mount
	install -m 0644 mount-helpers/srv-vault.automount $(DESTDIR)$(EXAMPLEDIR)/
	chmod 0644 $(DESTDIR)$(UNITDIR)/kekfs@.service $(DESTDIR)$(EXAMPLEDIR)/srv-vault.mount

format:
	clang-format -i $(LIB_SRC) $(FUSE_SRC) $(CLI_SRC) $(UNIT_SRC) $(FUZZ_SRC) */*.h tests/fuzz/*.h

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(BUILD) $(FUZZ_BUILD) -name '*.d' 2>/dev/null)
