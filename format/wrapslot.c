/* The 96-byte wrap slot's layout (docs/FORMAT.md, "Wrap slot"): encoding and checksum. */
#include "wrapslot.h"

#include <string.h>

#include <xxhash.h>

#include "../crypto/bytes.h"

#define SLOT_CHECKSUM_OFF 88

void wrap_slot_encode(const struct wrap_slot *slot, uint8_t out[WRAP_SLOT_LEN])
{
	memset(out, 0, WRAP_SLOT_LEN);
	put_le64(out, slot->seq);
	put_le32(out + 8, slot->kek_version);
	memcpy(out + 16, slot->wrapped, KEYWRAP_LEN);
	put_le64(out + SLOT_CHECKSUM_OFF, XXH64(out, SLOT_CHECKSUM_OFF, 0));
}

int wrap_slot_decode(const uint8_t in[WRAP_SLOT_LEN], struct wrap_slot *slot)
{
	if (get_le64(in + SLOT_CHECKSUM_OFF) != XXH64(in, SLOT_CHECKSUM_OFF, 0))
		return 0;
	if (get_le32(in + 12) != 0)
		return 0;
	slot->seq = get_le64(in);
	slot->kek_version = get_le32(in + 8);
	memcpy(slot->wrapped, in + 16, KEYWRAP_LEN);
	return 1;
}

int wrap_slots_newest(const uint8_t slots[2][WRAP_SLOT_LEN], struct wrap_slot *slot_out)
{
	struct wrap_slot s[2];
	int valid[2];

	for (int i = 0; i < 2; i++)
		valid[i] = wrap_slot_decode(slots[i], &s[i]);
	if (!valid[0] && !valid[1])
		return SLOT_ERR_CORRUPT;
	*slot_out = (valid[1] && (!valid[0] || s[1].seq > s[0].seq)) ? s[1] : s[0];
	return SLOT_OK;
}
