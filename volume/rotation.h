/*
 * KEK rotation: make KEK vN+1 active, then re-wrap every file header and the name key into
 * their spare slots, in a background thread, online (taking each file's inode lock) or
 * offline. Resumable: a marker file stays in .kekfs until a walk finds nothing left to do,
 * and files already on the active KEK are skipped. No FUSE here.
 */
#ifndef KEKFS_ROTATION_H
#define KEKFS_ROTATION_H

#include <stdint.h>

#include "../format/volume.h"
#include "../keyring/audit.h"
#include "fileio.h"
#include "inode_table.h"
#include "namekey.h"

#define REWRAP_MARKER "rewrap-pending"

struct rotation_config {
	int backing_fd;		    /* O_PATH fd of the backing directory (not owned) */
	const char *volume_path;    /* BACKING/.kekfs/volume */
	const char *keyring_path;   /* where the keyring is saved */
	struct volume *vol;	    /* unlocked */
	struct keyring *kr;	    /* unlocked */
	struct inode_table *inodes; /* the daemon's inodes when mounted, NULL offline */
	const char *audit_dir;	    /* BACKING/.kekfs, where audit.log lives */
};

struct rotation_status {
	int running;
	uint32_t target;    /* the KEK version being re-wrapped to */
	uint64_t total;	    /* regular files found by the counting pass */
	uint64_t done;	    /* files looked at so far */
	uint64_t rewrapped; /* of which re-wrapped (the rest were already current) */
	uint64_t failed;    /* headers that could not be re-wrapped (logged) */
	double elapsed;	    /* seconds since the walk started */
	int name_key_done;  /* the volume's name key is on the target version */
};

struct rotation;

struct rotation *rotation_new(const struct rotation_config *cfg);

/*
 * Rotates the keyring and starts the re-wrap. -EBUSY if one is running and !force (with
 * force the running walk is stopped and a new one starts). Returns 0 and the new version.
 */
int rotation_start(struct rotation *r, int force, const struct audit_actor *actor,
		   const uint8_t *material, uint32_t *version);

/*
 * Starts a re-wrap left unfinished (an authentic marker is there; one without a valid MAC is
 * logged and ignored); 0 if none was needed.
 */
int rotation_resume(struct rotation *r);

void rotation_get_status(struct rotation *r, struct rotation_status *st);

/* 1 if a re-wrap was left unfinished in the volume whose backing directory is backing_fd. */
int rotation_pending(int backing_fd);

/* Waits for the running walk to finish (rotation_get_status tells how it went). */
void rotation_wait(struct rotation *r);

/* Stops the walk (it resumes on the next mount) and frees everything. */
void rotation_free(struct rotation *r);

#endif
