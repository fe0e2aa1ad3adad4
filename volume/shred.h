/*
 * Crypto-shredding: a file is erased by wiping both wrap slots of its header (so its DEK is
 * gone), dropping the DEK from memory, failing open handles with EKEYREVOKED, and removing
 * every name of it. The seal then rotates the KEK, re-wraps every remaining file and
 * destroys every older KEK version, so that copies of the file made before the shred cannot
 * be opened either. Works mounted (with the daemon's inodes) and offline. No FUSE here.
 */
#ifndef KEKFS_SHRED_H
#define KEKFS_SHRED_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../format/header.h"
#include "../format/volume.h"
#include "../keyring/audit.h"
#include "inode_table.h"
#include "journal_mac.h"
#include "rotation.h"

#define SEAL_MARKER "seal-pending"

/* Drops the kernel's caches of a file (ino) and of a removed name in parent. */
typedef void (*shred_invalidate_fn)(void *arg, struct kinode *parent, const char *name,
				    struct kinode *ino);

struct shred_config {
	int backing_fd;			/* O_PATH fd of the backing directory (not owned) */
	struct volume *vol;		/* unlocked */
	struct keyring *kr;		/* unlocked */
	const char *keyring_path;	/* where the keyring is saved (seal) */
	const char *audit_dir;		/* BACKING/.kekfs */
	struct inode_table *inodes;	/* the daemon's inodes when mounted, NULL offline */
	shred_invalidate_fn invalidate; /* NULL offline */
	void *invalidate_arg;
	struct rotation *rot; /* for the seal */
};

struct shred;

struct shred *shred_new(const struct shred_config *cfg);

/* Stops a running seal (it resumes at the next mount) and frees everything. */
void shred_free(struct shred *s);

/*
 * Shreds the file at plaintext path rel (relative to the volume root), or with recursive
 * every file of the tree there (and removes the tree). What was done goes to out as lines;
 * returns 0, or -errno with the reason as one line in err.
 */
int shred_path(struct shred *s, const char *rel, int recursive, const struct audit_actor *actor,
	       FILE *out, char *err, size_t err_size);

/*
 * Whether this keyring can open a copy of a backing file whose first HEADER_LEN bytes are
 * hdr: 1 (yes), 0 (no) with the reason in msg.
 */
int shred_verify_header(const struct volume *vol, const struct keyring *kr,
			const uint8_t hdr[HEADER_LEN], char *msg, size_t msg_size);

/*
 * The seal marker in the volume at backing_fd: authentic only with a valid MAC and set while
 * the active KEK was active (a seal sets it after its rotation); a replayed older one counts
 * as unauthenticated.
 */
enum marker_state seal_marker_state(int backing_fd, const struct volume *vol,
				    const struct keyring *kr);

/* 1 if a seal was left unfinished (an authentic marker) in the volume of s. */
int seal_pending(struct shred *s);

/* Starts a seal in the background (mounted): rotation, marker, then destroy old KEKs. */
int seal_start(struct shred *s, const struct audit_actor *actor, uint32_t *version);

/* 1 while a seal runs: key changes (rotate, keys, another seal) wait for it. */
int seal_running(struct shred *s);

/*
 * Finishes a seal left unfinished, in the background; 0 if none was pending. A marker that
 * is not authentic is logged and ignored: it never destroys a KEK.
 */
int seal_resume(struct shred *s);

/* Waits for a seal started here to end; its last status line in msg. 0 if it finished. */
int seal_wait(struct shred *s, char *msg, size_t msg_size);

/* "seal: running ...", "seal: finished ..." or "seal: failed ..." (one line). */
void seal_status(struct shred *s, FILE *out);

/*
 * The seal's last step, once the re-wrap is complete: destroys every KEK version older than
 * the active one (census-guarded), removes the marker, logs it. 0, or -1 with msg.
 */
int seal_finish(struct shred *s, const struct audit_actor *actor, char *msg, size_t msg_size);

/*
 * The guarantee a finished seal gives, in plain words (several lines): what holds depends on
 * whether the keyring is inside the backing directory, outside it, or opened only by a token.
 * "seal status" prints it after a finished seal.
 */
void seal_guarantee_print(const struct shred *s, FILE *out);

#endif
