/*
 * Which files still need a KEK version: read every header's newest valid slot (by checksum,
 * no key needed). Retiring or destroying a version is refused while this finds any. No FUSE.
 */
#ifndef KEKFS_CENSUS_H
#define KEKFS_CENSUS_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "../format/volume.h"
#include "../keyring/audit.h"
#include "namekey.h"

#define CENSUS_EXAMPLES 10

struct census {
	uint64_t files;	     /* regular files whose current slot uses the version */
	uint64_t unreadable; /* headers that could not be read at all */
	int name_key;	     /* the volume's name key uses it */
	unsigned nexamples;
	/* The first files found: backing paths, or paths in the volume when names are encrypted */
	char examples[CENSUS_EXAMPLES][PATH_MAX];
};

/* Counts what still uses KEK version in the volume at backing_fd. */
void census_take(int backing_fd, const struct volume *vol, uint32_t version, struct census *c);

/*
 * Counts the files no slot of whose header opens with kr (a keyring restored from an older
 * copy lacks the KEKs of later wraps); damaged and shredded headers count as unreadable.
 */
void census_unopenable(int backing_fd, const struct volume *vol, const struct keyring *kr,
		       struct census *c);

/*
 * Retires or destroys KEK version only if no file and not the name key still need it
 * (unless force), or restores it. Writes what it did, or why not, as one line to msg.
 * Returns 0 or -1.
 */
int census_change_kek(int backing_fd, struct volume *vol, struct keyring *kr,
		      const char *keyring_path, const char *audit_dir,
		      const struct audit_actor *actor, uint32_t version, enum kek_change change,
		      uint64_t when, int force, char *msg, size_t msg_size);

#endif
