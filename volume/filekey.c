/* A file's DEK in its header's wrap slots, under the keyring's KEKs. */
#include "filekey.h"

#include "../keyring/kekwrap.h"

int header_seal_dek(struct file_header *h, const struct volume *v, const struct keyring *kr,
		    const uint8_t dek[DEK_LEN])
{
	uint8_t aad[HEADER_AAD_LEN];
	struct wrap_slot slot;
	int spare = h->current == 0 ? 1 : 0;
	uint64_t seq = h->current < 0 ? 1 : h->cur.seq + 1;

	if (wrap_slot_seal(&slot, kr, seq, aad, header_slot_aad(h, v, aad), dek) != 0)
		return HDR_ERR_KEK_MISSING;
	wrap_slot_encode(&slot, h->slots[spare]);
	h->current = spare;
	h->cur = slot;
	return HDR_OK;
}
int header_open_dek(struct file_header *h, const struct volume *v, const struct keyring *kr,
		    uint8_t dek[DEK_LEN])
{
	uint8_t aad[HEADER_AAD_LEN];
	int rc = wrap_slots_open((const uint8_t(*)[WRAP_SLOT_LEN])h->slots, kr, aad,
				 header_slot_aad(h, v, aad), dek, &h->current, &h->cur);

	switch (rc) {
	case SLOT_OK:
		return HDR_OK;
	case SLOT_ERR_KEK_MISSING:
		return HDR_ERR_KEK_MISSING;
	case SLOT_ERR_KEK_DESTROYED:
		return HDR_ERR_KEK_DESTROYED;
	case SLOT_ERR_AUTH:
		return HDR_ERR_AUTH;
	default:
		return HDR_ERR_CORRUPT;
	}
}
void header_check_slots(const struct file_header *h, const struct volume *v,
			const struct keyring *kr, int state[2])
{
	uint8_t aad[HEADER_AAD_LEN];
	size_t n = header_slot_aad(h, v, aad);

	for (int i = 0; i < 2; i++)
		state[i] = wrap_slot_check(h->slots[i], kr, aad, n);
}
