/* Wrapping a key into a wrap slot under a KEK of the keyring, and opening it again. */
#include "kekwrap.h"

#include <errno.h>
#include <string.h>

#include "../crypto/bytes.h"
#include "../crypto/secmem.h"

/* The slot AAD is the owner's AAD, then the slot's own sequence number and KEK version. */
static size_t slot_aad(uint8_t *buf, const uint8_t *aad, size_t aad_len, uint64_t seq,
		       uint32_t version)
{
	memcpy(buf, aad, aad_len);
	put_le64(buf + aad_len, seq);
	put_le32(buf + aad_len + 8, version);
	return aad_len + 12;
}

int wrap_slot_seal(struct wrap_slot *slot, const struct keyring *kr, uint64_t seq,
		   const uint8_t *aad, size_t aad_len, const uint8_t key[KEYWRAP_KEY_LEN])
{
	uint8_t full_aad[WRAP_SLOT_AAD_MAX + 12];
	uint32_t version = 0;
	const uint8_t *kek = keyring_active_kek(kr, &version);

	if (!kek || aad_len > WRAP_SLOT_AAD_MAX)
		return -EINVAL;
	slot->seq = seq;
	slot->kek_version = version;
	return key_wrap(kek, full_aad, slot_aad(full_aad, aad, aad_len, seq, version), key,
			slot->wrapped);
}

/* Tries one decoded slot; SLOT_OK with the key, or why it would not open. */
static int wrap_slot_try(const struct wrap_slot *slot, const struct keyring *kr, const uint8_t *aad,
			 size_t aad_len, uint8_t key[KEYWRAP_KEY_LEN])
{
	uint8_t full_aad[WRAP_SLOT_AAD_MAX + 12];
	int state = 0;
	const uint8_t *kek = keyring_kek(kr, slot->kek_version, &state);

	if (!kek)
		return state == 0 ? SLOT_ERR_KEK_MISSING : SLOT_ERR_KEK_DESTROYED;
	if (key_unwrap(kek, full_aad,
		       slot_aad(full_aad, aad, aad_len, slot->seq, slot->kek_version),
		       slot->wrapped, key) != 0)
		return SLOT_ERR_AUTH;
	return SLOT_OK;
}

int wrap_slots_open(const uint8_t slots[2][WRAP_SLOT_LEN], const struct keyring *kr,
		    const uint8_t *aad, size_t aad_len, uint8_t key[KEYWRAP_KEY_LEN], int *current,
		    struct wrap_slot *slot_out)
{
	struct wrap_slot s[2];
	int valid[2], order[2], err = SLOT_ERR_CORRUPT;

	if (aad_len > WRAP_SLOT_AAD_MAX)
		return -EINVAL;
	for (int i = 0; i < 2; i++)
		valid[i] = wrap_slot_decode(slots[i], &s[i]);
	/* Highest sequence number first. */
	order[0] = (valid[1] && (!valid[0] || s[1].seq > s[0].seq)) ? 1 : 0;
	order[1] = 1 - order[0];
	for (int k = 0; k < 2; k++) {
		int i = order[k], rc;

		if (!valid[i])
			continue;
		rc = wrap_slot_try(&s[i], kr, aad, aad_len, key);
		if (rc == SLOT_OK) {
			*current = i;
			*slot_out = s[i];
			return SLOT_OK;
		}
		if (err == SLOT_ERR_CORRUPT)
			err = rc;
	}
	return err;
}

int wrap_slot_check(const uint8_t in[WRAP_SLOT_LEN], const struct keyring *kr, const uint8_t *aad,
		    size_t aad_len)
{
	struct wrap_slot slot;
	uint8_t *key;
	int rc;

	if (aad_len > WRAP_SLOT_AAD_MAX)
		return -EINVAL;
	if (!wrap_slot_decode(in, &slot))
		return SLOT_ERR_CORRUPT;
	key = secmem_alloc(KEYWRAP_KEY_LEN);
	if (!key)
		return -ENOMEM;
	rc = wrap_slot_try(&slot, kr, aad, aad_len, key);
	secmem_free(key);
	return rc;
}
