#include "header.h"

#include <string.h>

#include <sodium.h>

#define HEADER_MAGIC "KKFS"
#define HEADER_SLOTS_OFF HEADER_PREFIX_LEN
#define HEADER_RESERVED_OFF (HEADER_SLOTS_OFF + 2 * WRAP_SLOT_LEN)

_Static_assert(sizeof(HEADER_MAGIC) - 1 == HEADER_MAGIC_LEN, "header magic");
_Static_assert(HEADER_FILE_ID_OFF + FILE_ID_LEN == HEADER_PREFIX_LEN, "header prefix");
_Static_assert(HEADER_FLAGS_OFF < HEADER_FILE_ID_OFF && HEADER_CHUNK_SHIFT_OFF < HEADER_FLAGS_OFF,
	       "header fields in order");
_Static_assert(HEADER_RESERVED_OFF <= HEADER_LEN, "two wrap slots fit the header");

int header_is_kekfs(const uint8_t buf[HEADER_LEN])
{
	return memcmp(buf + HEADER_MAGIC_OFF, HEADER_MAGIC, HEADER_MAGIC_LEN) == 0;
}

void header_init(struct file_header *h, const struct volume *v)
{
	memset(h, 0, sizeof(*h));
	h->cipher = (uint8_t)v->cipher;
	h->chunk_shift = (uint8_t)v->chunk_shift;
	randombytes_buf(h->file_id, FILE_ID_LEN);
	h->current = -1;
}

static void header_encode_prefix(const struct file_header *h, uint8_t out[HEADER_PREFIX_LEN])
{
	memcpy(out + HEADER_MAGIC_OFF, HEADER_MAGIC, HEADER_MAGIC_LEN);
	out[HEADER_VERSION_OFF] = HEADER_FORMAT;
	out[HEADER_CIPHER_OFF] = h->cipher;
	out[HEADER_CHUNK_SHIFT_OFF] = h->chunk_shift;
	out[HEADER_FLAGS_OFF] = 0;
	memcpy(out + HEADER_FILE_ID_OFF, h->file_id, FILE_ID_LEN);
}

size_t header_slot_aad(const struct file_header *h, const struct volume *v,
		       uint8_t aad[HEADER_AAD_LEN])
{
	header_encode_prefix(h, aad);
	memcpy(aad + HEADER_PREFIX_LEN, v->id, VOLUME_ID_LEN);
	return HEADER_PREFIX_LEN + VOLUME_ID_LEN;
}

void header_encode(const struct file_header *h, uint8_t out[HEADER_LEN])
{
	memset(out, 0, HEADER_LEN);
	header_encode_prefix(h, out);
	memcpy(out + HEADER_SLOTS_OFF, h->slots, sizeof(h->slots));
}

/*
 * A header with the shredded flag: a shred leaves both slots random, so neither passes its
 * checksum. A valid slot beside the flag is not what a shred writes: damaged or forged.
 */
static int header_shredded_check(const uint8_t in[HEADER_LEN])
{
	struct wrap_slot slot;

	if (wrap_slots_newest((const uint8_t(*)[WRAP_SLOT_LEN])(in + HEADER_SLOTS_OFF), &slot) ==
	    SLOT_OK)
		return HDR_ERR_FORMAT;
	return HDR_ERR_SHREDDED;
}

void header_shred_bytes(const uint8_t in[HEADER_LEN], uint8_t out[HEADER_SHRED_LEN])
{
	memcpy(out, in + HEADER_FLAGS_OFF, HEADER_SLOTS_OFF - HEADER_FLAGS_OFF);
	out[0] = HEADER_FLAG_SHREDDED;
	randombytes_buf(out + HEADER_SLOTS_OFF - HEADER_FLAGS_OFF, 2 * WRAP_SLOT_LEN);
}

int header_decode(const uint8_t in[HEADER_LEN], const struct volume *v, struct file_header *h)
{
	memset(h, 0, sizeof(*h));
	h->current = -1;
	if (!header_is_kekfs(in))
		return HDR_ERR_MAGIC;
	if (in[HEADER_VERSION_OFF] != HEADER_FORMAT ||
	    (in[HEADER_FLAGS_OFF] & ~HEADER_FLAG_SHREDDED) != 0)
		return HDR_ERR_FORMAT;
	if (in[HEADER_FLAGS_OFF] == HEADER_FLAG_SHREDDED)
		return header_shredded_check(in);
	for (int i = HEADER_RESERVED_OFF; i < HEADER_LEN; i++)
		if (in[i] != 0)
			return HDR_ERR_FORMAT;
	if (in[HEADER_CIPHER_OFF] != v->cipher || in[HEADER_CHUNK_SHIFT_OFF] != v->chunk_shift)
		return HDR_ERR_PARAMS;
	h->cipher = in[HEADER_CIPHER_OFF];
	h->chunk_shift = in[HEADER_CHUNK_SHIFT_OFF];
	memcpy(h->file_id, in + HEADER_FILE_ID_OFF, FILE_ID_LEN);
	memcpy(h->slots, in + HEADER_SLOTS_OFF, sizeof(h->slots));
	return HDR_OK;
}

int header_current_version(const uint8_t in[HEADER_LEN], uint32_t *version)
{
	struct wrap_slot slot;

	if (!header_is_kekfs(in))
		return HDR_ERR_MAGIC;
	if (in[HEADER_FLAGS_OFF] == HEADER_FLAG_SHREDDED)
		return header_shredded_check(in);
	if (wrap_slots_newest((const uint8_t(*)[WRAP_SLOT_LEN])(in + HEADER_SLOTS_OFF), &slot) !=
	    SLOT_OK)
		return HDR_ERR_CORRUPT;
	*version = slot.kek_version;
	return HDR_OK;
}

const char *header_strerror(int err)
{
	switch (err) {
	case HDR_OK:
		return "success";
	case HDR_ERR_MAGIC:
		return "not a kekfs file (bad header magic)";
	case HDR_ERR_FORMAT:
		return "unsupported or damaged header format";
	case HDR_ERR_PARAMS:
		return "header cipher or chunk size differs from the volume";
	case HDR_ERR_CORRUPT:
		return "header damaged: no wrap slot passes its checksum";
	case HDR_ERR_KEK_MISSING:
		return "header wrapped by a KEK version this keyring does not have";
	case HDR_ERR_KEK_DESTROYED:
		return "header wrapped by a KEK that was retired or destroyed";
	case HDR_ERR_AUTH:
		return "header authentication failed (tampered, or from another volume)";
	case HDR_ERR_SIZE:
		return "file size is impossible for kekfs: truncated or appended to";
	case HDR_ERR_SHREDDED:
		return "crypto-shredded: both wrap slots were wiped, the file's key is gone";
	default:
		return "unknown header error";
	}
}
