/*
 * A wrap slot: one 256-bit key (a file DEK, or the volume's name key) wrapped by one KEK
 * version. Each object keeps two slots; the current one is the valid slot with the
 * highest sequence number, so re-wrapping into the other slot never risks the key.
 */
#ifndef KEKFS_WRAPSLOT_H
#define KEKFS_WRAPSLOT_H

#include <stddef.h>
#include <stdint.h>

#include "../crypto/keywrap.h"

#define WRAP_SLOT_LEN 96
#define WRAP_SLOT_AAD_MAX 128

struct wrap_slot {
	uint64_t seq;
	uint32_t kek_version;
	uint8_t wrapped[KEYWRAP_LEN];
};

enum wrap_slot_err {
	SLOT_OK = 0,
	SLOT_ERR_CORRUPT = -1,	     /* no slot passes its checksum: damaged or torn */
	SLOT_ERR_KEK_MISSING = -2,   /* the slot's KEK version is not in the keyring */
	SLOT_ERR_KEK_DESTROYED = -3, /* the slot's KEK was destroyed or is refused */
	SLOT_ERR_AUTH = -4,	     /* checksum fine but unwrap fails: tampered or wrong keyring */
};

/* Encodes a slot with its xxHash64 checksum. */
void wrap_slot_encode(const struct wrap_slot *slot, uint8_t out[WRAP_SLOT_LEN]);

/* 1 if the checksum holds (and the slot was decoded), 0 if damaged, empty or torn. */
int wrap_slot_decode(const uint8_t in[WRAP_SLOT_LEN], struct wrap_slot *slot);

/*
 * The slot a pair would open with, judged by checksums alone (no key): for counting which
 * KEK versions are still in use. Returns SLOT_OK or SLOT_ERR_CORRUPT.
 */
int wrap_slots_newest(const uint8_t slots[2][WRAP_SLOT_LEN], struct wrap_slot *slot_out);

#endif
