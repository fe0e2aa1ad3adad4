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

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread

CRYPTO_SRC  := crypto/secmem.c crypto/aead.c crypto/kdf.c crypto/keywrap.c crypto/rsa_wrap.c
KEYRING_SRC := keyring/keyring.c keyring/wrapslot.c keyring/atomic_file.c keyring/audit.c
FSCORE_SRC  := fs/volume.c fs/header.c fs/chunk.c fs/fileio.c fs/objcrypt.c fs/log.c \
	       fs/inode_table.c fs/rotation.c fs/control.c \
	       fs/walk.c fs/census.c fs/names.c fs/namedir.c fs/shred.c fs/parallel.c
FUSE_SRC    := fs/fuse_ops.c
CLI_SRC     := cli/main.c cli/secret.c cli/unlock.c cli/mounts.c cli/cmd_init.c \
	       cli/cmd_mount.c cli/cmd_keys.c cli/notify.c cli/keysource.c cli/mount_helper.c \
	       cli/cmd_path.c cli/cmd_shred.c
LIB_SRC     := $(CRYPTO_SRC) $(KEYRING_SRC) $(FSCORE_SRC)
UNIT_SRC    := $(wildcard tests/unit/test_*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
APP_OBJ  := $(FUSE_SRC:%.c=$(BUILD)/%.o) $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/test_%.c=$(BUILD)/tests/unit_%)

.PHONY: all deps test demo bench cipher-speed format clean install
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

test: deps
	@$(MAKE) --no-print-directory all
	@rm -rf $(SAN_LOGS) && mkdir -p $(SAN_LOGS)
	@$(TEST_ENV) python3 tests/run_tests.py --kekfs $(BUILD)/kekfs

demo: deps
	@$(MAKE) --no-print-directory all
	@./tools/demo.sh $(BUILD)/kekfs

# The side-by-side benchmark (issue 7); never part of `make test`. BENCH_SCALE=0.25 for a
# quick run; see tools/bench.py for the other knobs.
bench: deps
	@$(MAKE) --no-print-directory $(BUILD)/kekfs
	@for p in fio gocryptfs securefs rsync; do command -v $$p >/dev/null || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$p >/dev/null || exit 1; done
	@python3 tools/bench.py $(BUILD)/kekfs

cipher-speed: $(BUILD)/cipher_speed
	@$(BUILD)/cipher_speed

$(BUILD)/cipher_speed: tools/cipher_speed.c $(LIB_OBJ)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $^ $(LDFLAGS) $(PKG_LIBS)

# make install [PREFIX=/usr/local] [DESTDIR=...]: the binary, mount.kekfs in /sbin (where
# mount(8) looks for helpers), man pages, the systemd template unit, and example units.
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
	ln -sf $(BINDIR)/kekfs $(DESTDIR)$(SBINDIR)/mount.kekfs
	install -m 0644 docs/man/kekfs.1 $(DESTDIR)$(MANDIR)/man1/kekfs.1
	install -m 0644 docs/man/mount.kekfs.8 $(DESTDIR)$(MANDIR)/man8/mount.kekfs.8
	$(SUBST) mount-helpers/kekfs@.service.in > $(DESTDIR)$(UNITDIR)/kekfs@.service
	$(SUBST) mount-helpers/srv-vault.mount.in > $(DESTDIR)$(EXAMPLEDIR)/srv-vault.mount
	install -m 0644 mount-helpers/srv-vault.automount $(DESTDIR)$(EXAMPLEDIR)/
	chmod 0644 $(DESTDIR)$(UNITDIR)/kekfs@.service $(DESTDIR)$(EXAMPLEDIR)/srv-vault.mount

format:
	clang-format -i $(LIB_SRC) $(FUSE_SRC) $(CLI_SRC) $(UNIT_SRC) */*.h

clean:
	rm -rf build build-san

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
