/*
 * Shared by the libFuzzer harnesses: the fixture volume (tests/fuzz/fixture, made by
 * make_corpus.py) whose config and keyring open with its committed test key, so seeds taken
 * from that volume get past authentication and the fuzzer reaches what lies behind it.
 */
#ifndef KEKFS_FUZZ_COMMON_H
#define KEKFS_FUZZ_COMMON_H

#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sodium.h>
#include <xxhash.h>

#include "../../format/volume.h"
#include "../../keyring/keyring.h"
#include "../../volume/namekey.h"

#ifndef FUZZ_FIXTURE
#error "build with -DFUZZ_FIXTURE=\"path of tests/fuzz/fixture\""
#endif

struct fixture {
	struct volume vol; /* unlocked: name_key set */
	struct keyring *kr;
};

/* Loads and unlocks the fixture once; any failure is a broken build, so it aborts. */
static inline struct fixture *fixture_get(void)
{
	static struct fixture fx;
	static int loaded;
	uint8_t key[32];
	FILE *f;

	if (loaded)
		return &fx;
	if (sodium_init() < 0)
		abort();
	f = fopen(FUZZ_FIXTURE "/key", "rb");
	if (!f || fread(key, 1, sizeof(key), f) != sizeof(key))
		abort();
	fclose(f);
	if (volume_load(FUZZ_FIXTURE "/volume", &fx.vol) != VOL_OK ||
	    keyring_load(
		FUZZ_FIXTURE "/keyring", fx.vol.id,
		&(struct kr_secret){.type = KR_SECRET_KEYFILE, .bytes = key, .len = sizeof(key)},
		&fx.kr) != KR_OK ||
	    volume_unlock(&fx.vol, fx.kr) != VOL_OK)
		abort();
	loaded = 1;
	return &fx;
}

/* An in-memory file holding the input; *path names it for functions that take a path. */
static inline int memfd_with(const uint8_t *data, size_t size, char path[64])
{
	int fd = memfd_create("fuzz", MFD_CLOEXEC);

	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
		abort();
	snprintf(path, 64, "/proc/self/fd/%d", fd);
	return fd;
}

/*
 * A copy of the input whose xxHash64 of bytes [0, covered) is written at offset at (the
 * checksums that guard the volume config, keyring and wrap slots): fed to a parser as well as
 * the input itself, it takes the fuzzer past the checksum into the fields behind it.
 */
static inline uint8_t *checksum_fixed(const uint8_t *data, size_t size, size_t covered, size_t at)
{
	uint8_t *copy = malloc(size ? size : 1);
	uint64_t h;

	if (!copy)
		abort();
	memcpy(copy, data, size);
	if (covered <= size && at + 8 <= size) {
		h = XXH64(copy, covered, 0);
		for (int i = 0; i < 8; i++)
			copy[at + i] = (uint8_t)(h >> (8 * i));
	}
	return copy;
}

static char fuzz_scratch[64];

static int scratch_unlink(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	remove(path);
	return 0;
}

static void scratch_remove(void)
{
	nftw(fuzz_scratch, scratch_unlink, 8, FTW_DEPTH | FTW_PHYS);
}

/* A directory on tmpfs (fsyncs cost nothing there) for harnesses that need files, removed
 * at exit. */
static inline const char *scratch_dir(void)
{
	if (!fuzz_scratch[0]) {
		snprintf(fuzz_scratch, sizeof(fuzz_scratch), "/dev/shm/kekfs-fuzz-XXXXXX");
		if (!mkdtemp(fuzz_scratch))
			abort();
		atexit(scratch_remove);
	}
	return fuzz_scratch;
}

#endif
