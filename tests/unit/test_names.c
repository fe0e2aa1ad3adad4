/* Unit tests for format/names: AES-SIV known answers, name round trips, lengths, tampering. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "../../format/names.h"

/* RFC 5297, A.1 (AES-SIV with a 256-bit key, i.e. AES-128-SIV): our tag || ct layout. */
static void test_siv_rfc5297(void **state)
{
	uint8_t key[32], ad[24], pt[14], want[30], out[30], back[14];

	(void)state;
	hex_decode("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff", key, 32);
	hex_decode("101112131415161718191a1b1c1d1e1f2021222324252627", ad, 24);
	hex_decode("112233445566778899aabbccddee", pt, 14);
	hex_decode("85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c", want, 30);
	assert_int_equal(name_siv_seal(key, 32, ad, 24, pt, 14, out), 0);
	assert_memory_equal(out, want, 30);
	assert_int_equal(name_siv_open(key, 32, ad, 24, out, 30, back), 0);
	assert_memory_equal(back, pt, 14);
	out[29] ^= 1;
	assert_int_equal(name_siv_open(key, 32, ad, 24, out, 30, back), -EBADMSG);
}

/* AES-256-SIV (64-byte key), checked against Python cryptography's AESSIV. */
static void test_siv256_kat(void **state)
{
	uint8_t key[64], ad[16], want[25], out[25];

	(void)state;
	for (int i = 0; i < 64; i++)
		key[i] = (uint8_t)i;
	for (int i = 0; i < 16; i++)
		ad[i] = (uint8_t)(0x10 + i);
	hex_decode("1184eee1dc14dff9f9e3c66d3b44ad927d3d402353aabc507e", want, 25);
	assert_int_equal(name_siv_seal(key, 64, ad, 16, (const uint8_t *)"hello.txt", 9, out), 0);
	assert_memory_equal(out, want, 25);
}

static struct name_keys *test_keys(void)
{
	uint8_t nk[32];

	for (int i = 0; i < 32; i++)
		nk[i] = (uint8_t)(i + 1);
	return name_keys_new(nk);
}

static void test_dirid(uint8_t id[NAME_DIRID_LEN], uint8_t first)
{
	for (int i = 0; i < NAME_DIRID_LEN; i++)
		id[i] = (uint8_t)(first + i);
}

/* The whole name path (key derivation, SIV, base64url), against an independent computation. */
static void test_name_kat(void **state)
{
	struct name_keys *nk = test_keys();
	uint8_t dir[NAME_DIRID_LEN];
	char enc[NAME_ENC_SIZE], back[NAME_PLAIN_MAX + 1];

	(void)state;
	test_dirid(dir, 0xa0);
	assert_int_equal(name_encrypt(nk, dir, "Documents", enc), 34);
	assert_string_equal(enc, "LDbuXHCndzzZkZDoQkCGt0w8oBnGCPItIA");
	assert_int_equal(name_decrypt(nk, dir, enc, back), 9);
	assert_string_equal(back, "Documents");
	name_keys_free(nk);
}

/* Lengths 1..255 round trip; 175 is the longest that fits 255 backing bytes. */
static void test_name_lengths(void **state)
{
	struct name_keys *nk = test_keys();
	uint8_t dir[NAME_DIRID_LEN];
	char name[300], enc[NAME_ENC_SIZE], back[NAME_PLAIN_MAX + 1];

	(void)state;
	test_dirid(dir, 1);
	for (int len = 1; len <= NAME_PLAIN_MAX; len++) {
		memset(name, 0xC3 + (len & 1), (size_t)len); /* bytes that are not UTF-8 */
		name[len] = '\0';
		int n = name_encrypt(nk, dir, name, enc);
		assert_true(n > 0);
		assert_int_equal(n > NAME_BACKING_MAX, len > NAME_SHORT_MAX);
		assert_null(strchr(enc, '.'));
		assert_int_equal(name_decrypt(nk, dir, enc, back), len);
		assert_string_equal(back, name);
	}
	memset(name, 'x', 256);
	name[256] = '\0';
	assert_int_equal(name_encrypt(nk, dir, name, enc), -ENAMETOOLONG);
	assert_int_equal(name_encrypt(nk, dir, "", enc), -EINVAL);
	assert_int_equal(name_encrypt(nk, dir, "a/b", enc), -EINVAL);
	name_keys_free(nk);
}

/* Another directory, a changed character, or a foreign name never decrypts. */
static void test_name_tamper(void **state)
{
	struct name_keys *nk = test_keys();
	uint8_t dir[NAME_DIRID_LEN], other[NAME_DIRID_LEN];
	char enc[NAME_ENC_SIZE], back[NAME_PLAIN_MAX + 1];
	int n;

	(void)state;
	test_dirid(dir, 1);
	test_dirid(other, 2);
	n = name_encrypt(nk, dir, "secret plans.odt", enc);
	assert_int_equal(name_decrypt(nk, other, enc, back), -EBADMSG);
	for (int i = 0; i < n; i++) {
		char saved = enc[i];
		enc[i] = saved == 'A' ? 'B' : 'A';
		assert_int_equal(name_decrypt(nk, dir, enc, back), -EBADMSG);
		enc[i] = saved;
	}
	assert_int_equal(name_decrypt(nk, dir, "notes.txt", back), -EBADMSG);
	assert_int_equal(name_decrypt(nk, dir, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", back), -EBADMSG);
	enc[n - 1] = '\0';
	assert_int_equal(name_decrypt(nk, dir, enc, back), -EBADMSG);
	name_keys_free(nk);
}

static void test_long_backing(void **state)
{
	char a[NAME_LONG_LEN + 1], b[NAME_LONG_LEN + 1];

	(void)state;
	name_long_backing("first", a);
	name_long_backing("second", b);
	assert_int_equal(strlen(a), NAME_LONG_LEN);
	assert_true(name_is_long(a));
	assert_string_not_equal(a, b);
	assert_false(name_is_long("kekfs.long.short"));
	assert_true(name_is_internal(NAME_DIRID_FILE));
	assert_false(name_is_internal(a));
}

static void test_xattr_names(void **state)
{
	struct name_keys *nk = test_keys();
	char enc[256], back[256], name[200];

	(void)state;
	assert_int_equal(xattr_name_encrypt(nk, "user.comment", enc), 0);
	assert_int_equal(strncmp(enc, "user.", 5), 0);
	assert_null(strstr(enc, "comment"));
	assert_int_equal(xattr_name_decrypt(nk, enc, back), 0);
	assert_string_equal(back, "user.comment");
	memcpy(name, "user.", 5);
	memset(name + 5, 'n', XATTR_NAME_PLAIN_MAX);
	name[5 + XATTR_NAME_PLAIN_MAX] = '\0';
	assert_int_equal(xattr_name_encrypt(nk, name, enc), 0);
	assert_true(strlen(enc) <= 255);
	strcat(name, "n");
	assert_int_equal(xattr_name_encrypt(nk, name, enc), -ERANGE);
	assert_int_equal(xattr_name_decrypt(nk, "user.comment", back), -EBADMSG);
	name_keys_free(nk);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_siv_rfc5297), cmocka_unit_test(test_siv256_kat),
	    cmocka_unit_test(test_name_kat),	cmocka_unit_test(test_name_lengths),
	    cmocka_unit_test(test_name_tamper), cmocka_unit_test(test_long_backing),
	    cmocka_unit_test(test_xattr_names),
	};

	if (secmem_init() != 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
