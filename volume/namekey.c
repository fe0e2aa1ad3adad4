/* The volume's name key, in the two wrap slots of its config, under the keyring's KEKs. */
#include "namekey.h"

#include <string.h>

#include <sodium.h>

#include "../crypto/secmem.h"
#include "../keyring/kekwrap.h"

int volume_create(struct volume *v, const uint8_t id[VOLUME_ID_LEN], int cipher,
		  unsigned chunk_shift, int name_mode, const struct keyring *kr)
{
	uint8_t aad[VOLUME_AAD_LEN];
	struct wrap_slot slot;

	memset(v, 0, sizeof(*v));
	memcpy(v->id, id, VOLUME_ID_LEN);
	randombytes_buf(v->root_dir_id, VOLUME_ID_LEN);
	v->cipher = cipher;
	v->chunk_shift = chunk_shift;
	v->name_mode = name_mode;
	v->name_key = secmem_alloc(KEYWRAP_KEY_LEN);
	if (!v->name_key)
		return VOL_ERR_NOMEM;
	randombytes_buf(v->name_key, KEYWRAP_KEY_LEN);
	volume_slot_aad(v, aad);
	v->current = 0;
	if (wrap_slot_seal(&slot, kr, 1, aad, sizeof(aad), v->name_key) != 0)
		return VOL_ERR_KEK;
	wrap_slot_encode(&slot, v->slots[0]);
	v->cur = slot;
	return VOL_OK;
}

int volume_unlock(struct volume *v, const struct keyring *kr)
{
	uint8_t aad[VOLUME_AAD_LEN];
	int rc;

	v->name_key = secmem_alloc(KEYWRAP_KEY_LEN);
	if (!v->name_key)
		return VOL_ERR_NOMEM;
	volume_slot_aad(v, aad);
	rc = wrap_slots_open((const uint8_t(*)[WRAP_SLOT_LEN])v->slots, kr, aad, sizeof(aad),
			     v->name_key, &v->current, &v->cur);
	if (rc == SLOT_OK)
		return VOL_OK;
	volume_clear(v);
	if (rc == SLOT_ERR_KEK_MISSING || rc == SLOT_ERR_KEK_DESTROYED)
		return VOL_ERR_KEK;
	return rc == SLOT_ERR_CORRUPT ? VOL_ERR_CORRUPT : VOL_ERR_TAMPERED;
}

void volume_check_slots(const struct volume *v, const struct keyring *kr, int state[2])
{
	uint8_t aad[VOLUME_AAD_LEN];

	volume_slot_aad(v, aad);
	for (int i = 0; i < 2; i++)
		state[i] = wrap_slot_check(v->slots[i], kr, aad, sizeof(aad));
}

int volume_rewrap(struct volume *v, const struct keyring *kr, const char *path)
{
	uint8_t aad[VOLUME_AAD_LEN];
	struct wrap_slot slot;
	int rc;

	if (v->cur.kek_version == keyring_active_version(kr))
		return 0;
	volume_slot_aad(v, aad);
	if (wrap_slot_seal(&slot, kr, v->cur.seq + 1, aad, sizeof(aad), v->name_key) != 0)
		return VOL_ERR_KEK;
	rc = volume_store_slot(v, &slot, keyring_generation(kr), path);
	return rc == VOL_OK ? 1 : rc;
}

int volume_record_generation(struct volume *v, const struct keyring *kr, const char *path)
{
	return volume_store_generation(v, keyring_generation(kr), path);
}
