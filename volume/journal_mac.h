/*
 * Authenticating what kekfs leaves in .kekfs for a later run to act on: the rotate --data
 * journal (volume/redata.c) and the re-wrap and seal markers. Whoever can write the backing
 * directory can write these files, so each carries a MAC under a subkey of the keyring key,
 * bound to the volume id, to what the record is (its kind) and to its random job id; a record
 * without a valid MAC was not written by a holder of the keyring and is never acted on.
 * No FUSE here.
 */
#ifndef KEKFS_JOURNAL_MAC_H
#define KEKFS_JOURNAL_MAC_H

#include <stddef.h>
#include <stdint.h>

#include "../format/volume.h"
#include "../keyring/keyring.h"

#define JMAC_LEN 32
#define JMAC_HEX (2 * JMAC_LEN)
#define JMAC_JOB_HEX 32 /* a job id: 16 random bytes, in hex */

/* A fresh random job id (JMAC_JOB_HEX hex digits and a NUL). */
void jmac_new_job(char job[JMAC_JOB_HEX + 1]);

/* The MAC of body, a record of kind for job; -ENOMEM without secure memory for the key. */
int jmac_compute(const struct keyring *kr, const struct volume *vol, const char *kind,
		 const char *job, const void *body, size_t len, uint8_t mac[JMAC_LEN]);

/* 0 if mac_hex (JMAC_HEX hex digits) is the MAC of body, else -EBADMSG (or -ENOMEM). */
int jmac_verify(const struct keyring *kr, const struct volume *vol, const char *kind,
		const char *job, const void *body, size_t len, const char *mac_hex);

enum marker_state {
	MARKER_ABSENT = 0,
	MARKER_AUTHENTIC = 1,
	MARKER_UNAUTHENTICATED = 2, /* forged, torn, or left by kekfs 0daec58 or older */
};

/* Writes marker name in .kekfs (atomically, with its MAC and the active KEK). 0 or -errno. */
int marker_write(int backing_fd, const struct volume *vol, const struct keyring *kr,
		 const char *name);

/* What .kekfs/name holds; for an authentic one, the KEK active when it was set (kek may be NULL).
 */
enum marker_state marker_check(int backing_fd, const struct volume *vol, const struct keyring *kr,
			       const char *name, uint32_t *kek);

#endif
