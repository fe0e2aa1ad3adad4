/*
 * Locks on ranges of a file's chunks. Requests on disjoint chunks run side by side; a request
 * waits only for those that overlap it and write. Callers hold the inode lock shared: any
 * change of the file's size takes it exclusively instead. No FUSE here.
 */
#ifndef KEKFS_RANGELOCK_H
#define KEKFS_RANGELOCK_H

#include <pthread.h>
#include <stdint.h>

/* One holder of a range, kept on the caller's stack while held. */
struct range_hold {
	uint64_t first, last; /* chunk indexes, inclusive */
	int write;
	struct range_hold *next;
};

struct range_lock {
	pthread_mutex_t mu;
	pthread_cond_t freed;
	struct range_hold *held;
};

void range_lock_init(struct range_lock *rl);
void range_lock_destroy(struct range_lock *rl);

/* Waits until no held range that overlaps [first, last] conflicts, then holds it as h. */
void range_lock_acquire(struct range_lock *rl, struct range_hold *h, uint64_t first, uint64_t last,
			int write);

/* Lets go of h and wakes the requests that waited on it. */
void range_lock_release(struct range_lock *rl, struct range_hold *h);

#endif
