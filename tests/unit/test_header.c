/* Unit tests for format/header: encode/decode, DEK slots, tamper and misuse detection. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "../../crypto/aead.h"
#include "../../format/header.h"
#include "../../volume/filekey.h"

#define SLOT_A 24
#define SLOT_B 120
#define SLOT_SUM 88

struct hfix {
	struct test_env *env;
	struct file_header h;
	uint8_t dek1[DEK_LEN], dek2[DEK_LEN], buf[HEADER_LEN];
};

static int setup(void **state)
{
	struct hfix *f = calloc(1, sizeof(*f));

	f->env = env_new(AEAD_XCHACHA20_POLY1305, 12);
	randombytes_buf(f->dek1, DEK_LEN);
	randombytes_buf(f->dek2, DEK_LEN);
	header_init(&f->h, &f->env->vol);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct hfix *f = *state;

	env_free(f->env);
	free(f);
	return 0;
}

/* Seals dek1, then (if two) dek2, and encodes the header into f->buf. */
static void seal_encode(struct hfix *f, int two)
{
	assert_int_equal(header_seal_dek(&f->h, &f->env->vol, f->env->kr, f->dek1), HDR_OK);
	if (two)
		assert_int_equal(header_seal_dek(&f->h, &f->env->vol, f->env->kr, f->dek2), HDR_OK);
	header_encode(&f->h, f->buf);
}

/* Decodes f->buf and opens its DEK; returns the open result (decode must succeed). */
static int decode_open(struct hfix *f, const struct volume *v, const struct keyring *kr,
		       struct file_header *out, uint8_t dek[DEK_LEN])
{
	assert_int_equal(header_decode(f->buf, v, out), HDR_OK);
	assert_int_equal(out->current, -1);
	return header_open_dek(out, v, kr, dek);
}

/* init + seal + encode + decode + open returns the same DEK, file id, slot 0, seq 1, KEK v1. */
static void test_round_trip(void **state)
{
	struct hfix *f = *state;
	struct file_header d;
	uint8_t dek[DEK_LEN];

	assert_int_equal(f->h.current, -1);
	assert_int_equal(f->h.cipher, AEAD_XCHACHA20_POLY1305);
	assert_int_equal(f->h.chunk_shift, 12);
	seal_encode(f, 0);
	assert_int_equal(decode_open(f, &f->env->vol, f->env->kr, &d, dek), HDR_OK);
	assert_memory_equal(dek, f->dek1, DEK_LEN);
	assert_memory_equal(d.file_id, f->h.file_id, FILE_ID_LEN);
	assert_int_equal(d.current, 0);
	assert_int_equal(d.cur.seq, 1);
	assert_int_equal(d.cur.kek_version, 1);
}

/* Two fresh headers get different random file ids. */
static void test_init_fresh_id(void **state)
{
	struct hfix *f = *state;
	struct file_header other;

	header_init(&other, &f->env->vol);
	assert_memory_not_equal(other.file_id, f->h.file_id, FILE_ID_LEN);
}

/* Each re-seal goes to the spare slot with seq + 1; a decoded header continues the sequence. */
static void test_slot_alternation(void **state)
{
	struct hfix *f = *state;
	struct file_header d;
	uint8_t dek[DEK_LEN];

	seal_encode(f, 1);
	assert_int_equal(f->h.current, 1);
	assert_int_equal(f->h.cur.seq, 2);
	assert_int_equal(decode_open(f, &f->env->vol, f->env->kr, &d, dek), HDR_OK);
	assert_memory_equal(dek, f->dek2, DEK_LEN);
	assert_int_equal(d.current, 1);
	assert_int_equal(d.cur.seq, 2);
	assert_int_equal(header_seal_dek(&d, &f->env->vol, f->env->kr, f->dek1), HDR_OK);
	assert_int_equal(d.current, 0);
	assert_int_equal(d.cur.seq, 3);
	header_encode(&d, f->buf);
	assert_int_equal(get_le64(f->buf + SLOT_A), 3);
	assert_int_equal(get_le64(f->buf + SLOT_B), 2);
	assert_int_equal(decode_open(f, &f->env->vol, f->env->kr, &d, dek), HDR_OK);
	assert_memory_equal(dek, f->dek1, DEK_LEN);
	assert_int_equal(d.current, 0);
}

/* A damaged checksum on the newer slot falls back to the older slot; on both, HDR_ERR_CORRUPT. */
static void test_checksum_fallback(void **state)
{
	struct hfix *f = *state;
	struct file_header d;
	uint8_t dek[DEK_LEN];

	seal_encode(f, 1);
	f->buf[SLOT_B + SLOT_SUM] ^= 0x01;
	assert_int_equal(decode_open(f, &f->env->vol, f->env->kr, &d, dek), HDR_OK);
	assert_memory_equal(dek, f->dek1, DEK_LEN);
	assert_int_equal(d.current, 0);
	assert_int_equal(d.cur.seq, 1);
	f->buf[SLOT_A + 40] ^= 0x10; /* wrapped-key byte, checksum not fixed */
	assert_int_equal(decode_open(f, &f->env->vol, f->env->kr, &d, dek), HDR_ERR_CORRUPT);
}

/* A header never sealed (both slots zero) has no valid slot. */
static void test_unsealed_is_corrupt(void **state)
{
	struct hfix *f = *state;
	struct file_header d;
	uint8_t dek[DEK_LEN];

	header_encode(&f->h, f->buf);
	assert_int_equal(decode_open(f, &f->env->vol, f->env->kr, &d, dek), HDR_ERR_CORRUPT);
}

/* A wrapped-key byte flipped with the checksum fixed up fails authentication. */
static void test_wrapped_flip_auth(void **state)
{
	struct hfix *f = *state;
	struct file_header d;
	uint8_t dek[DEK_LEN];

	seal_encode(f, 0);
	for (size_t off = 16; off < 16 + KEYWRAP_LEN; off += 7) {
		f->buf[SLOT_A + off] ^= 0x04;
		fix_xxh64(f->buf + SLOT_A, SLOT_SUM, SLOT_SUM);
		memset(dek, 0xAA, DEK_LEN);
		assert_int_equal(decode_open(f, &f->env->vol, f->env->kr, &d, dek), HDR_ERR_AUTH);
		assert_memory_not_equal(dek, f->dek1, DEK_LEN);
		f->buf[SLOT_A + off] ^= 0x04;
		fix_xxh64(f->buf + SLOT_A, SLOT_SUM, SLOT_SUM);
	}
	assert_int_equal(decode_open(f, &f->env->vol, f->env->kr, &d, dek), HDR_OK);
}

/* With two slots, a forged newer slot is skipped for the older one; both forged is AUTH. */
static void test_wrapped_flip_two_slots(void **state)
{
	struct hfix *f = *state;
	struct file_header d;
	uint8_t dek[DEK_LEN];

	seal_encode(f, 1);
	f->buf[SLOT_B + 50] ^= 0x01;
	fix_xxh64(f->buf + SLOT_B, SLOT_SUM, SLOT_SUM);
	assert_int_equal(decode_open(f, &f->env->vol, f->env->kr, &d, dek), HDR_OK);
	assert_int_equal(d.current, 0);
	assert_memory_equal(dek, f->dek1, DEK_LEN);
	f->buf[SLOT_A + 50] ^= 0x01;
	fix_xxh64(f->buf + SLOT_A, SLOT_SUM, SLOT_SUM);
	assert_int_equal(decode_open(f, &f->env->vol, f->env->kr, &d, dek), HDR_ERR_AUTH);
}

/* The slot's seq is authenticated; an unknown KEK version is reported as missing. */
static void test_slot_fields_bound(void **state)
{
	struct hfix *f = *state;
	struct file_header d;
	uint8_t dek[DEK_LEN];

	seal_encode(f, 0);
	put_le64(f->buf + SLOT_A, 9);
	fix_xxh64(f->buf + SLOT_A, SLOT_SUM, SLOT_SUM);
	assert_int_equal(decode_open(f, &f->env->vol, f->env->kr, &d, dek), HDR_ERR_AUTH);
	put_le64(f->buf + SLOT_A, 1);
	put_le32(f->buf + SLOT_A + 8, 2);
	fix_xxh64(f->buf + SLOT_A, SLOT_SUM, SLOT_SUM);
	assert_int_equal(decode_open(f, &f->env->vol, f->env->kr, &d, dek), HDR_ERR_KEK_MISSING);
	put_le32(f->buf + SLOT_A + 8, 1);
	f->buf[SLOT_A + 12] = 1; /* reserved slot bytes must be zero */
	fix_xxh64(f->buf + SLOT_A, SLOT_SUM, SLOT_SUM);
	assert_int_equal(decode_open(f, &f->env->vol, f->env->kr, &d, dek), HDR_ERR_CORRUPT);
}

/* Every file-id byte is bound into the slot AAD. */
static void test_file_id_bound(void **state)
{
	struct hfix *f = *state;
	struct file_header d;
	uint8_t dek[DEK_LEN];

	seal_encode(f, 1);
	for (size_t i = 8; i < 24; i++) {
		f->buf[i] ^= 0x20;
		assert_int_equal(decode_open(f, &f->env->vol, f->env->kr, &d, dek), HDR_ERR_AUTH);
		f->buf[i] ^= 0x20;
	}
}

/* A header of another volume does not open, even under the same keyring and parameters. */
static void test_other_volume(void **state)
{
	struct hfix *f = *state;
	struct test_env *other = env_new(AEAD_XCHACHA20_POLY1305, 12);
	struct volume v2;
	uint8_t id2[VOLUME_ID_LEN], dek[DEK_LEN];
	struct file_header d;

	seal_encode(f, 0);
	memcpy(id2, f->env->vol_id, VOLUME_ID_LEN);
	id2[0] ^= 1;
	assert_int_equal(
	    volume_create(&v2, id2, AEAD_XCHACHA20_POLY1305, 12, NAMES_PLAINTEXT, f->env->kr),
	    VOL_OK);
	assert_int_equal(decode_open(f, &v2, f->env->kr, &d, dek), HDR_ERR_AUTH);
	assert_int_equal(decode_open(f, &other->vol, other->kr, &d, dek), HDR_ERR_AUTH);
	volume_clear(&v2);
	env_free(other);
}

/* Bad magic, version, flags, reserved tail bytes and volume parameters are each refused. */
static void test_decode_errors(void **state)
{
	struct hfix *f = *state;
	struct file_header d;
	struct volume *v = &f->env->vol;
	static const struct {
		size_t off;
		uint8_t val;
		int err;
	} cases[] = {
	    {0, 'k', HDR_ERR_MAGIC}, {3, 'Z', HDR_ERR_MAGIC}, {4, 2, HDR_ERR_FORMAT},
	    {4, 0, HDR_ERR_FORMAT},  {7, 1, HDR_ERR_FORMAT},  {5, AEAD_AES256_GCM, HDR_ERR_PARAMS},
	    {6, 13, HDR_ERR_PARAMS}, {6, 9, HDR_ERR_PARAMS},
	};

	seal_encode(f, 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t saved = f->buf[cases[i].off];

		f->buf[cases[i].off] = cases[i].val;
		assert_int_equal(header_decode(f->buf, v, &d), cases[i].err);
		assert_int_equal(d.current, -1);
		f->buf[cases[i].off] = saved;
	}
	for (size_t i = 216; i < HEADER_LEN; i++) {
		f->buf[i] = 0x80;
		assert_int_equal(header_decode(f->buf, v, &d), HDR_ERR_FORMAT);
		f->buf[i] = 0;
	}
	assert_int_equal(header_decode(f->buf, v, &d), HDR_OK);
}

/* header_encode lays out magic, version, cipher, shift, flags, id, slots A/B, then zeros. */
static void test_encode_layout(void **state)
{
	static const uint8_t prefix[HEADER_PREFIX_LEN] = {
	    'K',  'K',	'F',  'S',  1,	  2,	16,   0,    0x00, 0x11, 0x22, 0x33,
	    0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
	struct file_header h;
	uint8_t out[HEADER_LEN];

	(void)state;
	memset(&h, 0, sizeof(h));
	h.cipher = AEAD_AES256_GCM;
	h.chunk_shift = 16;
	for (int i = 0; i < FILE_ID_LEN; i++)
		h.file_id[i] = (uint8_t)(0x11 * i);
	for (int i = 0; i < WRAP_SLOT_LEN; i++) {
		h.slots[0][i] = (uint8_t)(0x40 + i);
		h.slots[1][i] = (uint8_t)(0xA0 ^ i);
	}
	memset(out, 0xEE, sizeof(out));
	header_encode(&h, out);
	assert_memory_equal(out, prefix, sizeof(prefix));
	assert_memory_equal(out + SLOT_A, h.slots[0], WRAP_SLOT_LEN);
	assert_memory_equal(out + SLOT_B, h.slots[1], WRAP_SLOT_LEN);
	for (int i = SLOT_B + WRAP_SLOT_LEN; i < HEADER_LEN; i++)
		assert_int_equal(out[i], 0);
}

/* A really sealed slot A: seq 1, KEK version 1, zero pad, wrap, XXH64 checksum at 88. */
static void test_encode_sealed_slot(void **state)
{
	struct hfix *f = *state;

	seal_encode(f, 0);
	assert_memory_equal(f->buf, "KKFS\x01\x01\x0c\x00", 8);
	assert_memory_equal(f->buf + 8, f->h.file_id, FILE_ID_LEN);
	assert_int_equal(get_le64(f->buf + SLOT_A), 1);
	assert_int_equal(get_le32(f->buf + SLOT_A + 8), 1);
	assert_int_equal(get_le32(f->buf + SLOT_A + 12), 0);
	assert_memory_equal(f->buf + SLOT_A + 16, f->h.cur.wrapped, KEYWRAP_LEN);
	assert_int_equal(get_le64(f->buf + SLOT_A + SLOT_SUM), XXH64(f->buf + SLOT_A, SLOT_SUM, 0));
	for (int i = SLOT_B; i < HEADER_LEN; i++)
		assert_int_equal(f->buf[i], 0);
}

/* Every error code has its own message. */
static void test_strerror(void **state)
{
	(void)state;
	for (int e = HDR_ERR_SHREDDED; e <= HDR_OK; e++) {
		assert_string_not_equal(header_strerror(e), "unknown header error");
		for (int o = e + 1; o <= HDR_OK; o++)
			assert_string_not_equal(header_strerror(e), header_strerror(o));
	}
	assert_string_equal(header_strerror(-100), "unknown header error");
}

/*
 * A shredded header (flag set, both slots random) is told apart from damage: flag + no valid
 * slot is HDR_ERR_SHREDDED; random slots without the flag are damage; the flag beside a valid
 * slot is not what a shred writes. The file id is kept.
 */
static void test_shredded_vs_damaged(void **state)
{
	struct hfix *f = *state;
	struct file_header d;
	uint8_t out[HEADER_SHRED_LEN], dek[DEK_LEN];
	uint32_t v;

	seal_encode(f, 1);
	header_shred_bytes(f->buf, out);
	memcpy(f->buf + HEADER_FLAGS_OFF, out, sizeof(out));
	assert_int_equal(f->buf[HEADER_FLAGS_OFF], HEADER_FLAG_SHREDDED);
	assert_memory_equal(f->buf + 8, f->h.file_id, FILE_ID_LEN);
	assert_int_equal(header_decode(f->buf, &f->env->vol, &d), HDR_ERR_SHREDDED);
	assert_int_equal(header_current_version(f->buf, &v), HDR_ERR_SHREDDED);
	f->buf[HEADER_FLAGS_OFF] = 0; /* same random slots, no flag: damage */
	assert_int_equal(decode_open(f, &f->env->vol, f->env->kr, &d, dek), HDR_ERR_CORRUPT);
	seal_encode(f, 0); /* a valid slot again, then the flag set by hand */
	f->buf[HEADER_FLAGS_OFF] = HEADER_FLAG_SHREDDED;
	assert_int_equal(header_decode(f->buf, &f->env->vol, &d), HDR_ERR_FORMAT);
	f->buf[HEADER_FLAGS_OFF] = 0x02;
	assert_int_equal(header_decode(f->buf, &f->env->vol, &d), HDR_ERR_FORMAT);
}

/* header_check_slots (fsck): each slot on its own, OK, torn (checksum) or tampered (auth). */
static void test_check_slots(void **state)
{
	struct hfix *f = *state;
	struct file_header d;
	int st[2];

	seal_encode(f, 0);
	assert_int_equal(header_decode(f->buf, &f->env->vol, &d), HDR_OK);
	header_check_slots(&d, &f->env->vol, f->env->kr, st);
	assert_int_equal(st[0], SLOT_OK);
	assert_int_equal(st[1], SLOT_ERR_CORRUPT); /* never written */
	seal_encode(f, 0);			   /* now both slots hold the key */
	f->buf[SLOT_B + 40] ^= 1;
	fix_xxh64(f->buf + SLOT_B, SLOT_SUM, SLOT_SUM);
	f->buf[SLOT_A + 50] ^= 1; /* torn: checksum not fixed */
	assert_int_equal(header_decode(f->buf, &f->env->vol, &d), HDR_OK);
	header_check_slots(&d, &f->env->vol, f->env->kr, st);
	assert_int_equal(st[0], SLOT_ERR_CORRUPT);
	assert_int_equal(st[1], SLOT_ERR_AUTH);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_round_trip),
	    T(test_init_fresh_id),
	    T(test_slot_alternation),
	    T(test_checksum_fallback),
	    T(test_unsealed_is_corrupt),
	    T(test_wrapped_flip_auth),
	    T(test_wrapped_flip_two_slots),
	    T(test_slot_fields_bound),
	    T(test_file_id_bound),
	    T(test_other_volume),
	    T(test_decode_errors),
	    T(test_encode_layout),
	    T(test_encode_sealed_slot),
	    T(test_strerror),
	    T(test_shredded_vs_damaged),
	    T(test_check_slots),
	};

	if (secmem_init() != 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
