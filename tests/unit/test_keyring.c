/* Unit tests for keyring/keyring and fs/volume: save/load, unlock errors, tamper detection. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "../../crypto/aead.h"

/* Keyring file layout with one root slot and one KEK. */
#define KR_SLOT0 48
#define KR_KEK0 (48 + 128)
#define KR_MAC (KR_KEK0 + 96)
#define KR_SUM (KR_MAC + 32)
#define KR_LEN (KR_SUM + 8)
#define COPY2 4096 /* where the second copy of a small keyring or config starts */
#define KR_FILE_LEN (COPY2 + KR_LEN)
#define VOL_FILE_LEN (COPY2 + VOLUME_ENCODED_LEN)
#define VOL_SLOT0 48
#define VOL_SUM 248

struct kfix {
	struct test_env *env;
	char kr_path[128], vol_path[128];
	uint8_t buf[16384];
	size_t len;
};

static int setup(void **state)
{
	struct kfix *f = calloc(1, sizeof(*f));

	f->env = env_new(AEAD_XCHACHA20_POLY1305, 12);
	path_join(f->kr_path, sizeof(f->kr_path), f->env->dir, KEYRING_FILE);
	path_join(f->vol_path, sizeof(f->vol_path), f->env->dir, VOLUME_FILE);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct kfix *f = *state;

	env_free(f->env);
	free(f);
	return 0;
}

/*
 * Saves the fixture's keyring and reads the file's bytes into f->buf: two equal copies, the
 * second at 4 KiB. The tests of one copy's bytes then use copy 1 alone, as a one-copy file
 * (the form made before kekfs kept two), which must load all the same.
 */
static void save_and_read(struct kfix *f)
{
	assert_int_equal(keyring_save(f->env->kr, f->kr_path), KR_OK);
	assert_int_equal(file_read(f->kr_path, f->buf, sizeof(f->buf), &f->len), 0);
	assert_int_equal(f->len, KR_FILE_LEN);
	assert_memory_equal(f->buf, f->buf + COPY2, KR_LEN);
	for (size_t i = KR_LEN; i < COPY2; i++)
		assert_int_equal(f->buf[i], 0);
	f->len = KR_LEN;
}

/* Writes buf as the keyring file and loads it with the fixture's volume id and secret. */
static int load_bytes(struct kfix *f, const uint8_t *buf, size_t len)
{
	struct keyring *kr = NULL;
	int rc;

	file_write(f->kr_path, buf, len);
	rc = keyring_load(f->kr_path, f->env->vol_id, &f->env->secret, &kr);
	if (rc == KR_OK)
		assert_non_null(kr);
	else
		assert_null(kr);
	keyring_free(kr);
	return rc;
}

/* A saved keyring loads with its key file and yields the same KEK v1, active. */
static void test_save_load(void **state)
{
	struct kfix *f = *state;
	struct keyring *kr = NULL;
	int st = -1;

	save_and_read(f);
	assert_memory_equal(f->buf, "KEKFSKR1", 8);
	assert_memory_equal(f->buf + 16, f->env->vol_id, VOLUME_ID_LEN);
	assert_int_equal(keyring_load(f->kr_path, f->env->vol_id, &f->env->secret, &kr), KR_OK);
	assert_int_equal(keyring_active_version(kr), 1);
	assert_non_null(keyring_kek(kr, 1, &st));
	assert_int_equal(st, KEK_ACTIVE);
	assert_memory_equal(keyring_kek(kr, 1, NULL), keyring_kek(f->env->kr, 1, NULL), 32);
	keyring_free(kr);
}

/* A different 32-byte key file, or the right one at the wrong length, is KR_ERR_WRONG_SECRET. */
static void test_wrong_keyfile(void **state)
{
	struct kfix *f = *state;
	uint8_t *bytes;
	struct kr_secret s = keyfile_secret(&bytes);
	struct keyring *kr = NULL;

	save_and_read(f);
	assert_int_equal(keyring_load(f->kr_path, f->env->vol_id, &s, &kr), KR_ERR_WRONG_SECRET);
	memcpy(bytes, f->env->keyfile, 32);
	s.len = 31;
	assert_int_equal(keyring_load(f->kr_path, f->env->vol_id, &s, &kr), KR_ERR_WRONG_SECRET);
	assert_null(kr);
	secmem_free(bytes);
}

/* A passphrase offered to a key-file-only keyring is KR_ERR_NO_SLOT (no Argon2 run). */
static void test_no_slot(void **state)
{
	struct kfix *f = *state;
	struct kr_secret s = {
	    .type = KR_SECRET_PASSPHRASE, .bytes = (const uint8_t *)"pw", .len = 2};
	struct keyring *kr = NULL;

	save_and_read(f);
	assert_int_equal(keyring_load(f->kr_path, f->env->vol_id, &s, &kr), KR_ERR_NO_SLOT);
	assert_null(kr);
}

/* Another volume id is KR_ERR_WRONG_VOLUME; a missing file KR_ERR_MISSING; a bad dir KR_ERR_IO. */
static void test_wrong_volume_missing(void **state)
{
	struct kfix *f = *state;
	uint8_t id[VOLUME_ID_LEN];
	struct keyring *kr = NULL;
	char path[160];

	save_and_read(f);
	memcpy(id, f->env->vol_id, sizeof(id));
	id[15] ^= 1;
	assert_int_equal(keyring_load(f->kr_path, id, &f->env->secret, &kr), KR_ERR_WRONG_VOLUME);
	path_join(path, sizeof(path), f->env->dir, "nope");
	assert_int_equal(keyring_load(path, f->env->vol_id, &f->env->secret, &kr), KR_ERR_MISSING);
	assert_int_equal(keyring_save(f->env->kr, "/nonexistent-dir-kekfs/kr"), KR_ERR_IO);
	assert_int_equal(errno, ENOENT);
	assert_null(kr);
}

/* Every truncation of a one-copy file, or a huge file, is KR_ERR_CORRUPT; an appended byte
 * is a second copy that is bad. */
static void test_truncated(void **state)
{
	struct kfix *f = *state;
	uint8_t *big = calloc(1, 1 << 20);

	assert_non_null(big);
	save_and_read(f);
	for (size_t n = 0; n < KR_LEN; n += (n < 40 || n > KR_LEN - 48) ? 1 : 13)
		assert_int_equal(load_bytes(f, f->buf, n), KR_ERR_CORRUPT);
	assert_int_equal(load_bytes(f, f->buf, KR_LEN + 1), KR_OK);
	memcpy(big, f->buf, KR_LEN);
	assert_int_equal(load_bytes(f, big, 1 << 20), KR_ERR_CORRUPT);
	free(big);
	assert_int_equal(load_bytes(f, f->buf, KR_LEN), KR_OK);
}

/* A flipped byte anywhere fails the checksum: KR_ERR_CORRUPT, the format field included. */
static void test_flip_any_byte(void **state)
{
	struct kfix *f = *state;

	save_and_read(f);
	for (size_t i = 0; i < KR_LEN; i++) {
		f->buf[i] ^= (uint8_t)(1u << (i % 8));
		assert_int_equal(load_bytes(f, f->buf, KR_LEN), KR_ERR_CORRUPT);
		f->buf[i] ^= (uint8_t)(1u << (i % 8));
	}
	assert_int_equal(load_bytes(f, f->buf, KR_LEN), KR_OK);
}

/* Applies one edit (XOR mask) with the checksum fixed up, checks the load result, undoes it. */
static void edit_expect(struct kfix *f, size_t off, uint8_t mask, int want)
{
	f->buf[off] ^= mask;
	fix_xxh64(f->buf, KR_SUM, KR_SUM);
	assert_int_equal(load_bytes(f, f->buf, KR_LEN), want);
	f->buf[off] ^= mask;
	fix_xxh64(f->buf, KR_SUM, KR_SUM);
}

/* Edits that keep the checksum valid are caught by the MAC (TAMPERED) or the slot AEAD. */
static void test_checksummed_edits(void **state)
{
	struct kfix *f = *state;

	save_and_read(f);
	assert_int_equal(f->buf[KR_KEK0 + 4], KEK_ACTIVE);
	edit_expect(f, KR_KEK0 + 4, KEK_ACTIVE ^ KEK_DECRYPT_ONLY, KR_ERR_TAMPERED); /* state */
	edit_expect(f, KR_KEK0 + 4, KEK_ACTIVE ^ KEK_DESTROYED, KR_ERR_TAMPERED);
	edit_expect(f, KR_KEK0 + 0, 0x03, KR_ERR_TAMPERED);  /* KEK version */
	edit_expect(f, KR_KEK0 + 9, 0x01, KR_ERR_TAMPERED);  /* KEK creation time */
	edit_expect(f, KR_KEK0 + 30, 0x01, KR_ERR_TAMPERED); /* KEK wrap */
	edit_expect(f, KR_KEK0 + 90, 0x01, KR_ERR_TAMPERED); /* KEK padding */
	edit_expect(f, KR_MAC + 5, 0x01, KR_ERR_TAMPERED);
	edit_expect(f, 14, 0x01, KR_ERR_TAMPERED);		   /* head reserved */
	edit_expect(f, KR_SLOT0 + 1, 0x01, KR_ERR_TAMPERED);	   /* slot reserved */
	edit_expect(f, KR_SLOT0 + 150, 0x01, KR_ERR_TAMPERED);	   /* slot padding */
	edit_expect(f, KR_SLOT0 + 8, 0x01, KR_ERR_WRONG_SECRET);   /* KDF ops: slot AAD */
	edit_expect(f, KR_SLOT0 + 60, 0x01, KR_ERR_WRONG_SECRET);  /* salt */
	edit_expect(f, KR_SLOT0 + 100, 0x01, KR_ERR_WRONG_SECRET); /* wrapped keyring key */
	edit_expect(f, KR_SLOT0, KR_SECRET_KEYFILE ^ KR_SECRET_PASSPHRASE, KR_ERR_NO_SLOT);
	edit_expect(f, 16, 0x01, KR_ERR_WRONG_VOLUME);
	edit_expect(f, 8, 0x03, KR_ERR_UNSUPPORTED);
	edit_expect(f, 10, 0x03, KR_ERR_CORRUPT); /* slot count disagrees with the length */
	assert_int_equal(load_bytes(f, f->buf, KR_LEN), KR_OK);
}

/* keyring_kek: v1 is active; unknown versions are NULL with state 0. */
static void test_keyring_kek(void **state)
{
	struct kfix *f = *state;
	int st = -1;

	assert_non_null(keyring_kek(f->env->kr, 1, &st));
	assert_int_equal(st, KEK_ACTIVE);
	st = -1;
	assert_null(keyring_kek(f->env->kr, 2, &st));
	assert_int_equal(st, 0);
	assert_null(keyring_kek(f->env->kr, 0, NULL));
	assert_int_equal(keyring_active_version(f->env->kr), 1);
	assert_string_not_equal(keyring_strerror(KR_ERR_TAMPERED),
				keyring_strerror(KR_ERR_CORRUPT));
	assert_string_equal(keyring_strerror(-100), "unknown keyring error");
}

/* A passphrase keyring stores Argon2id params, reopens with the passphrase, not another. */
static void test_passphrase(void **state)
{
	struct kfix *f = *state;
	char *pw = secmem_alloc(16);
	struct kr_secret s = {
	    .type = KR_SECRET_PASSPHRASE, .bytes = (const uint8_t *)pw, .len = 15};
	struct keyring *kr = NULL, *back = NULL;

	memcpy(pw, "correct horse 1", 16);
	assert_int_equal(keyring_create(f->env->vol_id, &s, NULL, &kr), KR_OK);
	assert_int_equal(keyring_save(kr, f->kr_path), KR_OK);
	assert_int_equal(file_read(f->kr_path, f->buf, sizeof(f->buf), &f->len), 0);
	assert_int_equal(f->buf[KR_SLOT0], KR_SECRET_PASSPHRASE);
	assert_int_equal(get_le64(f->buf + KR_SLOT0 + 8), 3);
	assert_int_equal(get_le64(f->buf + KR_SLOT0 + 16), 64ULL << 20);
	assert_int_equal(keyring_load(f->kr_path, f->env->vol_id, &s, &back), KR_OK);
	assert_memory_equal(keyring_kek(back, 1, NULL), keyring_kek(kr, 1, NULL), 32);
	keyring_free(back);
	back = NULL;
	assert_int_equal(keyring_load(f->kr_path, f->env->vol_id, &f->env->secret, &back),
			 KR_ERR_NO_SLOT);
	pw[14] = '2';
	assert_int_equal(keyring_load(f->kr_path, f->env->vol_id, &s, &back), KR_ERR_WRONG_SECRET);
	assert_null(back);
	/* An absurd Argon2 cost (checksum fixed) is refused before any hashing. */
	put_le64(f->buf + KR_SLOT0 + 8, 1000);
	fix_xxh64(f->buf, KR_SUM, KR_SUM);
	file_write(f->kr_path, f->buf, KR_LEN);
	assert_int_equal(keyring_load(f->kr_path, f->env->vol_id, &s, &back), KR_ERR_CORRUPT);
	keyring_free(kr);
	secmem_free(pw);
}

/* volume_save/load/unlock round trip: same fields and name key. */
static void test_volume_round_trip(void **state)
{
	struct kfix *f = *state;
	struct volume v;

	assert_int_equal(volume_save(&f->env->vol, f->vol_path), VOL_OK);
	assert_int_equal(volume_load(f->vol_path, &v), VOL_OK);
	assert_null(v.name_key);
	assert_memory_equal(v.id, f->env->vol_id, VOLUME_ID_LEN);
	assert_memory_equal(v.root_dir_id, f->env->vol.root_dir_id, VOLUME_ID_LEN);
	assert_int_equal(v.cipher, AEAD_XCHACHA20_POLY1305);
	assert_int_equal(v.chunk_shift, 12);
	assert_int_equal(v.name_mode, NAMES_PLAINTEXT);
	assert_int_equal(volume_unlock(&v, f->env->kr), VOL_OK);
	assert_memory_equal(v.name_key, f->env->vol.name_key, 32);
	volume_clear(&v);
	assert_null(v.name_key);
}

/* A missing config is VOL_ERR_MISSING; a truncated one VOL_ERR_CORRUPT. */
static void test_volume_missing_short(void **state)
{
	struct kfix *f = *state;
	struct volume v;
	uint8_t buf[VOL_FILE_LEN];
	size_t len = 0;

	assert_int_equal(volume_load(f->vol_path, &v), VOL_ERR_MISSING);
	assert_int_equal(volume_save(&f->env->vol, f->vol_path), VOL_OK);
	assert_int_equal(file_read(f->vol_path, buf, sizeof(buf), &len), 0);
	file_write(f->vol_path, buf, VOLUME_ENCODED_LEN - 1);
	assert_int_equal(volume_load(f->vol_path, &v), VOL_ERR_CORRUPT);
}

/* Loads and unlocks f->buf as the volume file; returns the first failing code or VOL_OK. */
static int vol_try(struct kfix *f, const struct keyring *kr)
{
	struct volume v;
	int rc;

	file_write(f->vol_path, f->buf, VOLUME_ENCODED_LEN);
	rc = volume_load(f->vol_path, &v);
	if (rc == VOL_OK)
		rc = volume_unlock(&v, kr);
	if (rc != VOL_OK)
		assert_null(v.name_key);
	volume_clear(&v);
	return rc;
}

static const struct {
	size_t off;
	uint8_t val, flip; /* flip: XOR val into the byte rather than store it */
	int want;
} vol_cases[] = {
    {10, AEAD_AES256_GCM, 0, VOL_ERR_TAMPERED},
    {10, 3, 0, VOL_ERR_UNSUPPORTED},
    {10, 0xFE, 0, VOL_ERR_UNSUPPORTED},
    {11, 13, 0, VOL_ERR_TAMPERED},
    {11, 8, 0, VOL_ERR_UNSUPPORTED},
    {11, 21, 0, VOL_ERR_UNSUPPORTED},
    {12, 1, 0, VOL_ERR_TAMPERED}, /* plaintext -> encrypted names: the wrap catches it */
    {12, 2, 0, VOL_ERR_UNSUPPORTED},
    {13, 1, 0, VOL_ERR_UNSUPPORTED},
    {8, 2, 0, VOL_ERR_UNSUPPORTED},
    {20, 0x10, 1, VOL_ERR_TAMPERED},
    {40, 0x01, 1, VOL_ERR_TAMPERED},
    {VOL_SLOT0 + 30, 0x80, 1, VOL_ERR_TAMPERED},
    {VOL_SLOT0 + 8, 2, 0, VOL_ERR_KEK},
    {0, 'k', 0, VOL_ERR_CORRUPT},
};

/* Sets one volume byte, fixing the slot and file checksums. */
static void vol_set(struct kfix *f, size_t off, uint8_t val)
{
	f->buf[off] = val;
	if (off >= VOL_SLOT0 && off < VOL_SLOT0 + WRAP_SLOT_LEN)
		fix_xxh64(f->buf + VOL_SLOT0, 88, 88);
	fix_xxh64(f->buf, VOL_SUM, VOL_SUM);
}

/* Edited volume fields: checksum → CORRUPT; fixed up → UNSUPPORTED, TAMPERED or KEK. */
static void test_volume_tamper(void **state)
{
	struct kfix *f = *state;
	struct test_env *other = env_new(AEAD_XCHACHA20_POLY1305, 12);
	size_t len = 0;

	assert_int_equal(volume_save(&f->env->vol, f->vol_path), VOL_OK);
	assert_int_equal(file_read(f->vol_path, f->buf, sizeof(f->buf), &len), 0);
	assert_int_equal(len, VOL_FILE_LEN);
	assert_memory_equal(f->buf, f->buf + COPY2, VOLUME_ENCODED_LEN);
	assert_int_equal(vol_try(f, other->kr), VOL_ERR_TAMPERED); /* another keyring's KEK v1 */
	for (size_t i = 0; i < sizeof(vol_cases) / sizeof(vol_cases[0]); i++) {
		size_t off = vol_cases[i].off;
		uint8_t saved = f->buf[off];

		vol_set(f, off, vol_cases[i].flip ? saved ^ vol_cases[i].val : vol_cases[i].val);
		assert_int_equal(vol_try(f, f->env->kr), vol_cases[i].want);
		f->buf[off] ^= 0x01; /* and without the fix-up: damaged */
		assert_int_equal(vol_try(f, f->env->kr), VOL_ERR_CORRUPT);
		vol_set(f, off, saved);
	}
	assert_int_equal(vol_try(f, f->env->kr), VOL_OK);
	env_free(other);
}

/* Loads the keyring file as it is; returns the result and (on success) its bad copies. */
static int load_file(struct kfix *f, unsigned *bad)
{
	struct keyring *kr = NULL;
	int rc = keyring_load(f->kr_path, f->env->vol_id, &f->env->secret, &kr);

	*bad = rc == KR_OK ? keyring_bad_copies(kr, NULL) : 0;
	keyring_free(kr);
	return rc;
}

/*
 * Two copies: a flipped byte anywhere in either copy, or a zeroed 4 KiB block, still opens
 * (and names the bad copy); the same damage in both copies is KR_ERR_CORRUPT. A repair
 * writes the file back as it was.
 */
static void test_two_copies(void **state)
{
	struct kfix *f = *state;
	uint8_t orig[KR_FILE_LEN], *b = f->buf;
	unsigned bad;

	save_and_read(f);
	memcpy(orig, b, KR_FILE_LEN);
	for (size_t i = 0; i < KR_LEN; i++) {
		for (int c = 0; c < 2; c++) {
			b[c * COPY2 + i] ^= 0x10;
			file_write(f->kr_path, b, KR_FILE_LEN);
			assert_int_equal(load_file(f, &bad), KR_OK);
			assert_int_equal(bad, c ? COPY_2_BAD : COPY_1_BAD);
			b[c * COPY2 + i] ^= 0x10;
		}
		b[i] ^= 0x10;
		b[COPY2 + i] ^= 0x10;
		file_write(f->kr_path, b, KR_FILE_LEN);
		assert_int_equal(load_file(f, &bad), KR_ERR_CORRUPT);
		memcpy(b, orig, KR_FILE_LEN);
	}
	memset(b, 0, COPY2); /* a lost sector under copy 1 */
	file_write(f->kr_path, b, KR_FILE_LEN);
	assert_int_equal(load_file(f, &bad), KR_OK);
	assert_int_equal(bad, COPY_1_BAD);
	file_write(f->kr_path, orig, KR_FILE_LEN - 1); /* copy 2 cut short */
	assert_int_equal(load_file(f, &bad), KR_OK);
	assert_int_equal(bad, COPY_2_BAD);
	memset(b, 0, KR_FILE_LEN); /* both: a clear error */
	file_write(f->kr_path, b, KR_FILE_LEN);
	assert_int_equal(load_file(f, &bad), KR_ERR_CORRUPT);
	file_write(f->kr_path, orig, KR_LEN); /* one copy (an older kekfs): no damage */
	assert_int_equal(load_file(f, &bad), KR_OK);
	assert_int_equal(bad, COPY_SINGLE);
	assert_int_equal(keyring_repair(f->env->kr, f->kr_path), KR_OK);
	assert_int_equal(file_read(f->kr_path, b, sizeof(f->buf), &f->len), 0);
	assert_int_equal(f->len, KR_FILE_LEN);
	assert_memory_equal(b, orig, KR_FILE_LEN);
}

/* A copy from an older generation in either place: the newer copy is used, the old one bad. */
static void test_two_copies_generations(void **state)
{
	struct kfix *f = *state;
	uint8_t old[KR_LEN], *b = f->buf;
	struct keyring *kr = NULL;
	unsigned bad;

	save_and_read(f);
	memcpy(old, b, KR_LEN);
	save_and_read(f);
	for (int c = 0; c < 2; c++) {
		save_and_read(f);
		memcpy(b + c * COPY2, old, KR_LEN);
		file_write(f->kr_path, b, KR_FILE_LEN);
		assert_int_equal(keyring_load(f->kr_path, f->env->vol_id, &f->env->secret, &kr),
				 KR_OK);
		assert_int_equal(keyring_generation(kr), keyring_generation(f->env->kr));
		bad = keyring_bad_copies(kr, NULL);
		assert_int_equal(bad, c ? COPY_2_BAD : COPY_1_BAD);
		keyring_free(kr);
		kr = NULL;
	}
}

/* The volume config's two copies: either one damaged or zeroed opens, both do not. */
static void test_volume_two_copies(void **state)
{
	struct kfix *f = *state;
	uint8_t orig[VOL_FILE_LEN], *b = f->buf;
	struct volume v;

	assert_int_equal(volume_save(&f->env->vol, f->vol_path), VOL_OK);
	assert_int_equal(file_read(f->vol_path, orig, sizeof(orig), &f->len), 0);
	assert_int_equal(f->len, VOL_FILE_LEN);
	for (size_t i = 0; i < VOLUME_ENCODED_LEN; i += 7) {
		memcpy(b, orig, VOL_FILE_LEN);
		for (int c = 0; c < 2; c++) {
			b[c * COPY2 + i] ^= 0x01;
			file_write(f->vol_path, b, VOL_FILE_LEN);
			assert_int_equal(volume_load(f->vol_path, &v),
					 c ? VOL_ERR_CORRUPT : VOL_OK);
			assert_int_equal(v.bad_copies, c ? 0 : COPY_1_BAD);
		}
		b[i] ^= 0x01;
		file_write(f->vol_path, b, VOL_FILE_LEN);
		assert_int_equal(volume_load(f->vol_path, &v), VOL_OK);
		assert_int_equal(v.bad_copies, COPY_2_BAD);
		assert_int_equal(volume_unlock(&v, f->env->kr), VOL_OK);
		volume_clear(&v);
	}
	memcpy(b, orig, VOL_FILE_LEN);
	memset(b, 0, COPY2);
	file_write(f->vol_path, b, VOL_FILE_LEN);
	assert_int_equal(volume_load(f->vol_path, &v), VOL_OK);
	assert_int_equal(v.bad_copies, COPY_1_BAD);
	assert_int_equal(volume_repair(&v), VOL_OK);
	assert_int_equal(file_read(f->vol_path, b, sizeof(f->buf), &f->len), 0);
	assert_memory_equal(b, orig, VOL_FILE_LEN);
	file_write(f->vol_path, orig, VOLUME_ENCODED_LEN);
	assert_int_equal(volume_load(f->vol_path, &v), VOL_OK);
	assert_int_equal(v.bad_copies, COPY_SINGLE);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_save_load),
	    T(test_wrong_keyfile),
	    T(test_no_slot),
	    T(test_wrong_volume_missing),
	    T(test_truncated),
	    T(test_flip_any_byte),
	    T(test_checksummed_edits),
	    T(test_keyring_kek),
	    T(test_passphrase),
	    T(test_volume_round_trip),
	    T(test_volume_missing_short),
	    T(test_volume_tamper),
	    T(test_two_copies),
	    T(test_two_copies_generations),
	    T(test_volume_two_copies),
	};

	if (secmem_init() != 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
