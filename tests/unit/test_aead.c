/* Unit tests for crypto/aead: known answers, round trips, tamper detection, nonces, names. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "../../crypto/aead.h"

static const int ciphers[] = {AEAD_XCHACHA20_POLY1305, AEAD_AES256_GCM};

/* Opens nonce || ct || tag built from hex parts and checks it yields the expected plaintext. */
static void check_kat(int cipher, const char *key_hex, const char *nonce_hex, const char *aad_hex,
		      const char *ct_hex, const char *tag_hex, const uint8_t *want, size_t want_len)
{
	uint8_t key[32], aad[64], in[256], pt[256];
	size_t aad_len = hex_decode(aad_hex, aad, sizeof(aad)), n;

	assert_int_equal(hex_decode(key_hex, key, sizeof(key)), 32);
	n = hex_decode(nonce_hex, in, sizeof(in));
	assert_int_equal(n, aead_nonce_len(cipher));
	n += hex_decode(ct_hex, in + n, sizeof(in) - n);
	n += hex_decode(tag_hex, in + n, sizeof(in) - n);
	assert_int_equal(n, want_len + aead_overhead(cipher));
	memset(pt, 0xAA, sizeof(pt));
	assert_int_equal(aead_open(cipher, key, aad, aad_len, in, n, pt), 0);
	assert_memory_equal(pt, want, want_len);
	/* The same message with its last tag byte changed must not open. */
	in[n - 1] ^= 1;
	assert_int_equal(aead_open(cipher, key, aad, aad_len, in, n, pt), -EBADMSG);
}

/* XChaCha20-Poly1305 vector of draft-irtf-cfrg-xchacha-03, A.3.1, in our wire format. */
static void test_xchacha_kat(void **state)
{
	static const char pt[] = "Ladies and Gentlemen of the class of '99: If I could offer you "
				 "only one tip for the future, sunscreen would be it.";
	(void)state;
	check_kat(AEAD_XCHACHA20_POLY1305,
		  "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
		  "404142434445464748494a4b4c4d4e4f5051525354555657", "50515253c0c1c2c3c4c5c6c7",
		  "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
		  "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
		  "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
		  "21f9664c97637da9768812f615c68b13b52e",
		  "c0875924c1c7987947deafd8780acf49", (const uint8_t *)pt, sizeof(pt) - 1);
}

/* AES-256-GCM, McGrew-Viega test case 16 (96-bit IV, AAD, 60-byte plaintext). */
static void test_gcm_kat_tc16(void **state)
{
	uint8_t pt[60];

	(void)state;
	assert_int_equal(
	    hex_decode("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
		       "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
		       pt, sizeof(pt)),
	    60);
	check_kat(AEAD_AES256_GCM,
		  "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
		  "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2",
		  "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
		  "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
		  "76fc6ece0f4e1768cddf8853bb2d551b", pt, sizeof(pt));
}

/* AES-256-GCM test cases 13 (empty message) and 14 (one zero block), both without AAD. */
static void test_gcm_kat_tc13_14(void **state)
{
	static const uint8_t zeros[16];
	static const char *zkey =
	    "0000000000000000000000000000000000000000000000000000000000000000";

	(void)state;
	check_kat(AEAD_AES256_GCM, zkey, "000000000000000000000000", "", "",
		  "530f8afbc74536b9a963b4f1c4cb738b", zeros, 0);
	check_kat(AEAD_AES256_GCM, zkey, "000000000000000000000000", "",
		  "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919", zeros,
		  16);
}

/* Seal then open gives back the plaintext, for both ciphers, lengths 0/1/4095/4096, AAD or not. */
static void test_round_trip(void **state)
{
	static const size_t lens[] = {0, 1, 4095, 4096};
	uint8_t key[32], aad[13], *pt = malloc(4096), *out = malloc(4096 + 40),
				  *back = malloc(4096);

	(void)state;
	randombytes_buf(key, sizeof(key));
	randombytes_buf(aad, sizeof(aad));
	randombytes_buf(pt, 4096);
	for (size_t c = 0; c < 2; c++) {
		for (size_t i = 0; i < 4; i++) {
			size_t n = lens[i], alen = (i & 1) ? sizeof(aad) : 0;

			assert_int_equal(aead_seal(ciphers[c], key, aad, alen, pt, n, out), 0);
			memset(back, 0x55, 4096);
			assert_int_equal(aead_open(ciphers[c], key, aad, alen, out,
						   n + aead_overhead(ciphers[c]), back),
					 0);
			assert_memory_equal(back, pt, n);
			if (n < 4096) /* nothing written past the plaintext */
				assert_int_equal(back[n], 0x55);
		}
	}
	free(pt);
	free(out);
	free(back);
}

/*
 * kekfs builds XChaCha20-Poly1305 from HChaCha20 and OpenSSL's ChaCha20-Poly1305: its
 * messages must be libsodium's, byte for byte, both ways, at every length class.
 */
static void test_xchacha_matches_libsodium(void **state)
{
	static const size_t lens[] = {0, 1, 63, 64, 65, 1000, 4096};
	const size_t nl = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
	uint8_t key[32], aad[25], pt[4096], out[4096 + 40], back[4096];

	(void)state;
	randombytes_buf(key, sizeof(key));
	randombytes_buf(aad, sizeof(aad));
	randombytes_buf(pt, sizeof(pt));
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		size_t n = lens[i], alen = (i & 1) ? sizeof(aad) : 0;

		assert_int_equal(aead_seal(AEAD_XCHACHA20_POLY1305, key, aad, alen, pt, n, out), 0);
		assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
				     back, NULL, out + nl, n, out + nl + n, aad, alen, out, key),
				 0);
		assert_memory_equal(back, pt, n);
		randombytes_buf(out, nl);
		crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
		    out + nl, out + nl + n, NULL, pt, n, aad, alen, NULL, out, key);
		memset(back, 0, sizeof(back));
		assert_int_equal(
		    aead_open(AEAD_XCHACHA20_POLY1305, key, aad, alen, out, n + nl + 16, back), 0);
		assert_memory_equal(back, pt, n);
	}
}

/* A zero-length message sealed from a NULL plaintext opens, and is exactly the overhead long. */
static void test_empty_null_plaintext(void **state)
{
	uint8_t key[32] = {7}, out[AEAD_MAX_OVERHEAD], back[1] = {0};

	(void)state;
	for (size_t c = 0; c < 2; c++) {
		assert_int_equal(aead_seal(ciphers[c], key, NULL, 0, NULL, 0, out), 0);
		assert_int_equal(
		    aead_open(ciphers[c], key, NULL, 0, out, aead_overhead(ciphers[c]), back), 0);
		out[0] ^= 0x80;
		assert_int_equal(
		    aead_open(ciphers[c], key, NULL, 0, out, aead_overhead(ciphers[c]), back),
		    -EBADMSG);
	}
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* Flipping any bit-position of nonce, ciphertext or tag fails with -EBADMSG and zeroes pt. */
static void test_tamper_every_byte(void **state)
{
	enum { LEN = 100 };
	uint8_t key[32], aad[8] = "abcdefgh", pt[LEN], out[LEN + AEAD_MAX_OVERHEAD], back[LEN];

	(void)state;
	randombytes_buf(key, sizeof(key));
	randombytes_buf(pt, sizeof(pt));
	for (size_t c = 0; c < 2; c++) {
		size_t total = LEN + aead_overhead(ciphers[c]);

		assert_int_equal(aead_seal(ciphers[c], key, aad, sizeof(aad), pt, LEN, out), 0);
		for (size_t i = 0; i < total; i++) {
			out[i] ^= (uint8_t)(1u << (i % 8));
			memset(back, 0xAA, sizeof(back));
			assert_int_equal(
			    aead_open(ciphers[c], key, aad, sizeof(aad), out, total, back),
			    -EBADMSG);
			assert_true(all_zero(back, LEN));
			out[i] ^= (uint8_t)(1u << (i % 8));
		}
		assert_int_equal(aead_open(ciphers[c], key, aad, sizeof(aad), out, total, back), 0);
		assert_memory_equal(back, pt, LEN);
	}
}

/* Changing any AAD byte, dropping the AAD, a wrong key, or a short input all fail to open. */
static void test_tamper_aad_key_len(void **state)
{
	enum { LEN = 64 };
	uint8_t key[32], aad[20], pt[LEN], out[LEN + AEAD_MAX_OVERHEAD], back[LEN];

	(void)state;
	randombytes_buf(key, sizeof(key));
	randombytes_buf(aad, sizeof(aad));
	randombytes_buf(pt, sizeof(pt));
	for (size_t c = 0; c < 2; c++) {
		int ci = ciphers[c];
		size_t total = LEN + aead_overhead(ci);

		assert_int_equal(aead_seal(ci, key, aad, sizeof(aad), pt, LEN, out), 0);
		for (size_t i = 0; i < sizeof(aad); i++) {
			aad[i] ^= 0x01;
			memset(back, 0xAA, sizeof(back));
			assert_int_equal(aead_open(ci, key, aad, sizeof(aad), out, total, back),
					 -EBADMSG);
			assert_true(all_zero(back, LEN));
			aad[i] ^= 0x01;
		}
		assert_int_equal(aead_open(ci, key, aad, 0, out, total, back), -EBADMSG);
		assert_int_equal(aead_open(ci, key, aad, sizeof(aad) - 1, out, total, back),
				 -EBADMSG);
		assert_int_equal(aead_open(ci, key, aad, sizeof(aad), out, total - 1, back),
				 -EBADMSG);
		assert_int_equal(
		    aead_open(ci, key, aad, sizeof(aad), out, aead_overhead(ci) - 1, back),
		    -EBADMSG);
		key[31] ^= 0x80;
		assert_int_equal(aead_open(ci, key, aad, sizeof(aad), out, total, back), -EBADMSG);
		key[31] ^= 0x80;
	}
}

/* A message sealed with one cipher does not open as the other. */
static void test_cross_cipher(void **state)
{
	uint8_t key[32] = {1}, pt[48] = {2}, out[48 + AEAD_MAX_OVERHEAD], back[48 + 12];

	(void)state;
	assert_int_equal(aead_seal(AEAD_AES256_GCM, key, NULL, 0, pt, 48, out), 0);
	assert_int_equal(aead_open(AEAD_XCHACHA20_POLY1305, key, NULL, 0, out, 48 + 28, back),
			 -EBADMSG);
	assert_int_equal(aead_seal(AEAD_XCHACHA20_POLY1305, key, NULL, 0, pt, 48, out), 0);
	assert_int_equal(aead_open(AEAD_AES256_GCM, key, NULL, 0, out, 48 + 40, back), -EBADMSG);
}

/* Two seals of the same plaintext under the same key differ, starting with the nonce. */
static void test_random_nonce(void **state)
{
	uint8_t key[32] = {3}, pt[32] = {4}, a[32 + AEAD_MAX_OVERHEAD], b[32 + AEAD_MAX_OVERHEAD];

	(void)state;
	for (size_t c = 0; c < 2; c++) {
		size_t nl = aead_nonce_len(ciphers[c]), total = 32 + aead_overhead(ciphers[c]);

		assert_int_equal(aead_seal(ciphers[c], key, NULL, 0, pt, 32, a), 0);
		assert_int_equal(aead_seal(ciphers[c], key, NULL, 0, pt, 32, b), 0);
		assert_memory_not_equal(a, b, nl);
		assert_memory_not_equal(a + nl, b + nl, total - nl);
	}
}

/* Nonces come from a pool refilled in blocks: across refills and a fork, none repeats. */
static void test_nonce_pool(void **state)
{
	enum { N = 600 }; /* 600 x 24 bytes: several refills of the pool */
	static uint8_t seen[N + 1][24];
	uint8_t key[32] = {5}, out[AEAD_MAX_OVERHEAD];
	int pipefd[2];
	pid_t pid;

	(void)state;
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(aead_seal(AEAD_XCHACHA20_POLY1305, key, NULL, 0, NULL, 0, out), 0);
		memcpy(seen[i], out, 24);
		for (size_t j = 0; j < i; j++)
			assert_memory_not_equal(seen[i], seen[j], 24);
	}
	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) { /* the child's next nonce must not be the parent's next one */
		if (aead_seal(AEAD_XCHACHA20_POLY1305, key, NULL, 0, NULL, 0, out) != 0)
			_exit(1);
		_exit(write(pipefd[1], out, 24) == 24 ? 0 : 1);
	}
	assert_int_equal(read(pipefd[0], seen[N], 24), 24);
	assert_int_equal(aead_seal(AEAD_XCHACHA20_POLY1305, key, NULL, 0, NULL, 0, out), 0);
	assert_memory_not_equal(seen[N], out, 24);
	close(pipefd[0]);
	close(pipefd[1]);
}

/* Overheads are nonce + 16-byte tag: 24 + 16 = 40 for XChaCha, 12 + 16 = 28 for GCM. */
static void test_overhead(void **state)
{
	(void)state;
	assert_int_equal(aead_overhead(AEAD_XCHACHA20_POLY1305), 40);
	assert_int_equal(aead_overhead(AEAD_AES256_GCM), 28);
	assert_int_equal(aead_nonce_len(AEAD_XCHACHA20_POLY1305), 24);
	assert_int_equal(aead_nonce_len(AEAD_AES256_GCM), 12);
	assert_true(aead_overhead(AEAD_XCHACHA20_POLY1305) <= AEAD_MAX_OVERHEAD);
}

/* Names map to ids and back; unknown names, ids and case variants are refused. */
static void test_names(void **state)
{
	(void)state;
	assert_int_equal(aead_cipher_from_name("xchacha20-poly1305"), AEAD_XCHACHA20_POLY1305);
	assert_int_equal(aead_cipher_from_name("aes-256-gcm"), AEAD_AES256_GCM);
	assert_int_equal(aead_cipher_from_name("AES-256-GCM"), 0);
	assert_int_equal(aead_cipher_from_name(""), 0);
	assert_int_equal(aead_cipher_from_name("aes-256-gcm "), 0);
	for (size_t c = 0; c < 2; c++) {
		assert_true(aead_cipher_valid(ciphers[c]));
		assert_int_equal(aead_cipher_from_name(aead_cipher_name(ciphers[c])), ciphers[c]);
	}
	assert_string_equal(aead_cipher_name(AEAD_XCHACHA20_POLY1305), "xchacha20-poly1305");
	assert_string_equal(aead_cipher_name(AEAD_AES256_GCM), "aes-256-gcm");
	assert_string_equal(aead_cipher_name(0), "unknown");
	assert_string_equal(aead_cipher_name(3), "unknown");
	assert_false(aead_cipher_valid(0));
	assert_false(aead_cipher_valid(3));
	assert_false(aead_cipher_valid(-1));
}

/* Sealing with an unknown cipher is -EINVAL; opening with one is -EBADMSG. */
static void test_invalid_cipher(void **state)
{
	uint8_t key[32] = {0}, pt[8] = {0}, out[8 + AEAD_MAX_OVERHEAD] = {0};

	(void)state;
	assert_int_equal(aead_seal(0, key, NULL, 0, pt, 8, out), -EINVAL);
	assert_int_equal(aead_seal(3, key, NULL, 0, pt, 8, out), -EINVAL);
	assert_int_equal(aead_open(3, key, NULL, 0, out, sizeof(out), pt), -EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_xchacha_kat),
	    cmocka_unit_test(test_gcm_kat_tc16),
	    cmocka_unit_test(test_gcm_kat_tc13_14),
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_xchacha_matches_libsodium),
	    cmocka_unit_test(test_empty_null_plaintext),
	    cmocka_unit_test(test_tamper_every_byte),
	    cmocka_unit_test(test_tamper_aad_key_len),
	    cmocka_unit_test(test_cross_cipher),
	    cmocka_unit_test(test_random_nonce),
	    cmocka_unit_test(test_nonce_pool),
	    cmocka_unit_test(test_overhead),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_invalid_cipher),
	};

	if (secmem_init() != 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
