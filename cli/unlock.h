/* Opening a volume for a command: its config, its keyring, unlocked with a person's secret. */
#ifndef KEKFS_UNLOCK_H
#define KEKFS_UNLOCK_H

#include <limits.h>

#include "../format/volume.h"
#include "secret.h"

/* Where a volume's files are: BACKING/.kekfs/volume and the keyring (default or --keyring). */
struct volume_paths {
	char volume[PATH_MAX + 32];
	char keyring[PATH_MAX + 32];
	char audit_dir[PATH_MAX + 16]; /* BACKING/.kekfs */
};

void volume_paths_get(const char *backing, const char *keyring_opt, struct volume_paths *p);

/*
 * Loads the config and unlocks keyring and name key; one clear message per failure, -1, or
 * UNLOCK_DAMAGED when the right secret met a damaged or tampered keyring or config (or a
 * keyring older than the volume or this host has seen, unless src->allow_rollback): fsck
 * counts that as a problem found.
 * The unlock, or its failure, goes to the audit log with purpose ("mount", "rotate", ...);
 * with purpose NULL nothing is written (a read-only mount leaves the backing untouched).
 */
#define UNLOCK_DAMAGED (-2)
/* The secret fits no slot of the keyring: trying again with the same one cannot help. */
#define UNLOCK_WRONG_SECRET (-3)
int volume_unlock_all(const char *backing, const char *keyring_opt, const struct secret_source *src,
		      const char *purpose, struct volume *vol, struct keyring **kr);

/* Has every keyring save, from now on, recorded in this host's state (see hoststate.h). */
void host_generation_tracking(void);

/*
 * Brings an unlocked volume that is not mounted back to a consistent state before a command
 * uses it: finishes the file re-encryptions a crash interrupted. 0, or -1 after a message.
 */
int volume_finish_interrupted(int backing_fd, const struct volume *vol, const struct keyring *kr,
			      const char *backing);

#endif
