/*
 * The DEK of a file, kept in the two wrap slots of its header (format/header.h) and wrapped
 * by a KEK of the keyring: sealing it under the active KEK, opening it, checking each slot.
 */
#ifndef KEKFS_FILEKEY_H
#define KEKFS_FILEKEY_H

#include "../format/header.h"
#include "../keyring/keyring.h"

/* Wraps dek under the active KEK into the spare slot with the next sequence number. */
__attribute__((warn_unused_result)) int header_seal_dek(struct file_header *h,
							const struct volume *v,
							const struct keyring *kr,
							const uint8_t dek[DEK_LEN]);

/* Unwraps the DEK from the current slot (see wrap_slots_open). */
__attribute__((warn_unused_result)) int header_open_dek(struct file_header *h,
							const struct volume *v,
							const struct keyring *kr,
							uint8_t dek[DEK_LEN]);

/* What each wrap slot of a decoded header holds: SLOT_* codes (see wrap_slot_check). */
void header_check_slots(const struct file_header *h, const struct volume *v,
			const struct keyring *kr, int state[2]);

#endif
