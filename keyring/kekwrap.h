/*
 * Sealing a 256-bit key (a file DEK, or the volume's name key) into a wrap slot under the
 * keyring's active KEK, and opening a pair of slots with whichever KEK version each names.
 */
#ifndef KEKFS_KEKWRAP_H
#define KEKFS_KEKWRAP_H

#include "../format/wrapslot.h"
#include "keyring.h"

/* Wraps key under the active KEK into slot with sequence seq; aad binds the owning object. */
__attribute__((warn_unused_result)) int wrap_slot_seal(struct wrap_slot *slot,
						       const struct keyring *kr, uint64_t seq,
						       const uint8_t *aad, size_t aad_len,
						       const uint8_t key[KEYWRAP_KEY_LEN]);

/*
 * Opens the current slot of a pair: the one that passes checksum and unwrap with the
 * highest sequence number. On success writes the key and sets *current (0 or 1) and
 * *slot_out (decoded current slot); otherwise returns the most telling error.
 */
__attribute__((warn_unused_result)) int wrap_slots_open(const uint8_t slots[2][WRAP_SLOT_LEN],
							const struct keyring *kr,
							const uint8_t *aad, size_t aad_len,
							uint8_t key[KEYWRAP_KEY_LEN], int *current,
							struct wrap_slot *slot_out);

/*
 * What one slot holds (for fsck): SLOT_OK if it opens, SLOT_ERR_CORRUPT if it fails its
 * checksum (torn, overwritten, or never written: all zero), or why it would not open.
 */
int wrap_slot_check(const uint8_t in[WRAP_SLOT_LEN], const struct keyring *kr, const uint8_t *aad,
		    size_t aad_len);

#endif
