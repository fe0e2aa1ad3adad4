/* Helpers shared by the unit tests: hex, temp dirs, checksum fix-ups, a keyring and volume. */
#ifndef KEKFS_TESTUTIL_H
#define KEKFS_TESTUTIL_H

#include <ftw.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>
#include <sodium.h>
#include <xxhash.h>

#include "../../crypto/bytes.h"
#include "../../crypto/secmem.h"
#include "../../format/volume.h"
#include "../../keyring/keyring.h"
#include "../../volume/namekey.h"

/* Decodes a hex string (whitespace ignored) into out; returns the byte count. */
static inline size_t hex_decode(const char *hex, uint8_t *out, size_t max)
{
	size_t n = 0, bin_len = 0;
	char *clean = malloc(strlen(hex) + 1);

	assert_non_null(clean);
	for (const char *p = hex; *p; p++)
		if (*p != ' ' && *p != '\n')
			clean[n++] = *p;
	clean[n] = '\0';
	assert_int_equal(sodium_hex2bin(out, max, clean, n, NULL, &bin_len, NULL), 0);
	assert_int_equal(bin_len * 2, n);
	free(clean);
	return bin_len;
}

/* Recomputes the little-endian XXH64 (seed 0) of buf[0..covered) and stores it at buf+at. */
static inline void fix_xxh64(uint8_t *buf, size_t covered, size_t at)
{
	put_le64(buf + at, XXH64(buf, covered, 0));
}

static inline void tmpdir_make(char dir[64])
{
	snprintf(dir, 64, "/tmp/kekfs-unit-XXXXXX");
	assert_non_null(mkdtemp(dir));
}

static inline int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static inline void tmpdir_remove(const char *dir)
{
	nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static inline void path_join(char *out, size_t n, const char *dir, const char *name)
{
	assert_true((size_t)snprintf(out, n, "%s/%s", dir, name) < n);
}

static inline int file_read(const char *path, uint8_t *buf, size_t max, size_t *len)
{
	FILE *f = fopen(path, "rb");

	if (!f)
		return -1;
	*len = fread(buf, 1, max, f);
	fclose(f);
	return 0;
}

static inline void file_write(const char *path, const uint8_t *buf, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* A key-file secret (32 random bytes in secure memory), a keyring and a volume on it. */
struct test_env {
	uint8_t vol_id[VOLUME_ID_LEN];
	uint8_t *keyfile;
	struct kr_secret secret;
	struct keyring *kr;
	struct volume vol;
	char dir[64];
};

static inline struct kr_secret keyfile_secret(uint8_t **bytes)
{
	struct kr_secret s = {.type = KR_SECRET_KEYFILE, .len = 32};

	*bytes = secmem_alloc(32);
	assert_non_null(*bytes);
	randombytes_buf(*bytes, 32);
	s.bytes = *bytes;
	return s;
}

static inline struct test_env *env_new(int cipher, unsigned chunk_shift)
{
	struct test_env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	randombytes_buf(e->vol_id, sizeof(e->vol_id));
	e->secret = keyfile_secret(&e->keyfile);
	assert_int_equal(keyring_create(e->vol_id, &e->secret, NULL, &e->kr), KR_OK);
	assert_int_equal(
	    volume_create(&e->vol, e->vol_id, cipher, chunk_shift, NAMES_PLAINTEXT, e->kr), VOL_OK);
	tmpdir_make(e->dir);
	return e;
}

static inline void env_free(struct test_env *e)
{
	if (!e)
		return;
	tmpdir_remove(e->dir);
	volume_clear(&e->vol);
	keyring_free(e->kr);
	secmem_free(e->keyfile);
	free(e);
}

#endif
