/*
 * Checking an unmounted volume: every file header (both wrap slots), every chunk that holds
 * data (holes are found with SEEK_DATA, never read), every name, directory id and long-name
 * side file, symlink targets, the name key's slots, unfinished-job markers and the audit
 * chain. Each problem is reported with the file's plaintext path where it can be had.
 * Repairs only what is safe. No FUSE here.
 */
#ifndef KEKFS_FSCK_H
#define KEKFS_FSCK_H

#include <stdint.h>

#include "../format/volume.h"
#include "../keyring/keyring.h"
#include "namekey.h"

struct fsck_problem {
	const char *plain;   /* path from the volume root ("/a/b"), NULL if it cannot be had */
	const char *backing; /* path relative to the backing directory */
	const char *what;    /* what is wrong */
	const char *todo;    /* what to do about it */
	int repaired;	     /* --repair fixed it */
};

typedef void (*fsck_report_fn)(void *arg, const struct fsck_problem *p);
typedef void (*fsck_progress_fn)(void *arg, uint64_t done, uint64_t total);

struct fsck_config {
	int backing_fd;		  /* the backing directory (not owned) */
	const struct volume *vol; /* unlocked */
	const struct keyring *kr; /* unlocked */
	const char *audit_dir;	  /* BACKING/.kekfs */
	const char *keyring_path; /* --keyring PATH, or NULL: BACKING/.kekfs/keyring */
	int repair; /* rewrite torn slots from their twin, drop orphans and unnamed empty dirs */
	int force;  /* with repair: also remove crypto-shredded files */
	fsck_report_fn report;
	fsck_progress_fn progress; /* may be NULL */
	void *arg;
};

struct fsck_result {
	uint64_t files, dirs, symlinks;
	uint64_t chunks;   /* chunks read and authenticated (holes are not read) */
	uint64_t problems; /* reported, repaired ones included */
	uint64_t repaired;
};

/* Checks the whole volume. 0 when the walk ran (problems or not), or -errno. */
int fsck_run(const struct fsck_config *cfg, struct fsck_result *res);

#endif
