/*
 * The volume's name key: made with a new volume, unwrapped at unlock, re-wrapped under the
 * active KEK after a rotation. It lives in the config's two wrap slots (format/volume.h).
 */
#ifndef KEKFS_NAMEKEY_H
#define KEKFS_NAMEKEY_H

#include "../format/volume.h"
#include "../keyring/keyring.h"

/* A new volume: random root dir id and name key, wrapped by the active KEK in slot A. */
__attribute__((warn_unused_result)) int volume_create(struct volume *v,
						      const uint8_t id[VOLUME_ID_LEN], int cipher,
						      unsigned chunk_shift, int name_mode,
						      const struct keyring *kr);

/* Unwraps the name key; VOL_ERR_TAMPERED if the config's fields were altered. */
__attribute__((warn_unused_result)) int volume_unlock(struct volume *v, const struct keyring *kr);

/* What each name-key slot of a loaded config holds: SLOT_* codes (see wrap_slot_check). */
void volume_check_slots(const struct volume *v, const struct keyring *kr, int state[2]);

/*
 * Re-wraps the name key under the active KEK into the spare slot and saves the config to
 * path. Returns 1 if it was re-wrapped, 0 if it already was on the active KEK, or VOL_ERR_*.
 */
int volume_rewrap(struct volume *v, const struct keyring *kr, const char *path);

/*
 * Records the keyring's generation after a key change was saved, so that a keyring restored
 * from an older copy (which would bring destroyed KEKs back) is refused. 0 or VOL_ERR_IO.
 */
int volume_record_generation(struct volume *v, const struct keyring *kr, const char *path);

#endif
