/*
 * Re-encrypting a file's contents under a fresh DEK and file id (`kekfs rotate --data`), for
 * data whose key may have been exposed. A KEK rotation only re-wraps the DEK; this replaces it.
 *
 * Crash-safe by a redo journal in .kekfs/redata: the whole new ciphertext (and the file's
 * user.* xattrs, re-sealed) is first written and synced to JOB.new beside a JOB.target that
 * names the file; the rename to JOB.ready commits the job; then JOB.ready is copied over the
 * file in place. The file keeps its inode, so hard links, open handles and the kernel's page
 * cache (the plaintext does not change) all stay right. A JOB.ready found later (after a
 * crash) is copied again before the volume is used; a JOB.new alone is thrown away. No FUSE.
 *
 * The backing directory may be written by others, so JOB.target carries a MAC (journal_mac.h)
 * over everything it says, both file ids and the hash of JOB.ready, bound to the volume and
 * the job id. A job that fails it, whose path leaves the volume, or whose file does not carry
 * its file id is refused, never applied, and left in place for fsck to report.
 */
#ifndef KEKFS_REDATA_H
#define KEKFS_REDATA_H

#include <stddef.h>

#include "../format/volume.h"
#include "../keyring/audit.h"
#include "inode_table.h"

#define REDATA_DIR "redata" /* in .kekfs */

struct redata_config {
	int backing_fd;		    /* O_PATH fd of the backing directory (not owned) */
	const struct volume *vol;   /* unlocked */
	const struct keyring *kr;   /* unlocked */
	const char *audit_dir;	    /* BACKING/.kekfs */
	struct inode_table *inodes; /* the daemon's inodes when mounted, NULL offline */
	int check_only;		    /* redata_resume only checks the journal (fsck) */
	/* Called for each job redata_resume refuses (else it logs one line); may be NULL */
	void (*refused)(void *arg, const char *job, const char *why);
	void *refused_arg;
};

struct redata;

/* NULL: out of memory. */
struct redata *redata_new(const struct redata_config *cfg);

void redata_free(struct redata *rd);

/*
 * Re-encrypts the regular file at plaintext path rel (relative to the volume root). While it
 * runs, the file's readers and writers wait (mounted). 0, or -errno with one line in err.
 */
int redata_file(struct redata *rd, const char *rel, const struct audit_actor *actor, char *err,
		size_t err_size);

/*
 * Finishes every job a crash left committed, and removes uncommitted ones. Run before the
 * volume is used (mount, offline commands). Refused jobs are reported and kept. Returns how
 * many files it finished (with check_only: would finish), or -errno with one line in err
 * (the journal is kept: the next run tries again).
 */
int redata_resume(struct redata *rd, char *err, size_t err_size);

/* 1 if committed jobs wait in the volume at backing_fd (a read-only mount cannot finish them). */
int redata_pending(int backing_fd);

#endif
