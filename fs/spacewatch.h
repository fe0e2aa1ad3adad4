/*
 * Watches the free space of the backing file system, so that a full disk can fail write()
 * itself: the kernel's writeback cache takes writes into its page cache and sends them
 * later, when an error can no longer reach the writer. The watcher says when the free space
 * is below what the kernel may hold dirty for the mount (its bdi dirty limit), plus the
 * ciphertext overhead; while it is, the daemon opens files for writing with direct I/O and
 * refuses the cached writers it already has. No FUSE here.
 */
#ifndef KEKFS_SPACEWATCH_H
#define KEKFS_SPACEWATCH_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct spacewatch {
	int backing_fd;		    /* the backing directory (O_PATH is enough for fstatfs) */
	char mountpoint[PATH_MAX];  /* to find the mount's bdi; "" when not known */
	uint64_t chunk, overhead;   /* plaintext bytes per chunk, stored bytes added per chunk */
	int limit_fd;		    /* /sys/class/bdi/<dev>/max_bytes, -1 if none */
	int resolved;		    /* limit_fd was looked for */
	uint64_t reserve;	    /* free bytes below which the disk counts as low */
	_Atomic uint64_t unchecked; /* bytes written since the last check */
	_Atomic int64_t checked_ns; /* CLOCK_MONOTONIC of the last check */
	_Atomic int low;
	pthread_mutex_t check_lock;
};

/* mountpoint may be NULL (no bdi is looked for: the global dirty threshold is used). */
void spacewatch_init(struct spacewatch *sw, int backing_fd, const char *mountpoint, uint64_t chunk,
		     uint64_t overhead);
void spacewatch_destroy(struct spacewatch *sw);

/* Finds the mount's dirty limit and checks once. Called at FUSE INIT, when the mount exists,
 * so that the watcher's one fd is open from the start rather than at some later write. */
void spacewatch_start(struct spacewatch *sw);

/*
 * Counts bytes just written; checks the free space every few MiB. Returns 1 when this call
 * found the disk newly low (the caller then turns its cached writers away), else 0.
 */
int spacewatch_wrote(struct spacewatch *sw, uint64_t bytes);

/* A write met ENOSPC or EDQUOT: low at once. Returns 1 if it was not low before. */
int spacewatch_full(struct spacewatch *sw);

/* Whether the disk is low now, checking again if the last check is a while old; *turned
 * says whether this call found it newly low. */
int spacewatch_low(struct spacewatch *sw, int *turned);

#endif
