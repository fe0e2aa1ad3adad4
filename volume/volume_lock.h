/*
 * One volume, one writer: an OFD lock on BACKING/.kekfs/lock (network file systems honour it
 * too), held by the daemon for its whole life and by an offline command for its run, so that
 * two keyrings can never fork. The lock file's contents name the holder, for the message that
 * refuses the next one. No FUSE here.
 */
#ifndef KEKFS_VOLUME_LOCK_H
#define KEKFS_VOLUME_LOCK_H

#include <limits.h>

#define VOLUME_LOCK_FILE "lock"

enum volume_lock_mode {
	/* May change the volume: a read-write daemon, an offline key or file command. */
	VOLUME_LOCK_EXCLUSIVE,
	/* Only reads it: a read-only mount, fsck without --repair. Any number share it; it
	 * writes nothing, not even the lock file, which it never creates. */
	VOLUME_LOCK_READ,
};

/* Who holds a volume's lock, as far as the lock and its file tell. */
struct volume_lock_holder {
	int exclusive; /* a writer holds it: the record below is its own */
	long pid;      /* 0: no record */
	char host[64];
	char mountpoint[PATH_MAX]; /* a daemon's mount point, or "" */
	char command[32];	   /* an offline command's name, or "" */
};

/*
 * Takes the lock of the volume in backing; an exclusive taker records itself (mountpoint, or
 * command) in the file. *fd is the lock, held until it is closed (it survives fork: it belongs
 * to the open file description), or -1 where there is nothing to lock: no volume config in
 * backing, or a read-only taker on a volume that has no lock file yet.
 * 0; -EWOULDBLOCK when another holds it (*who says who); -EINVAL when the lock file is not a
 * regular file; -ENOLCK when the file system cannot lock; else -errno.
 */
int volume_lock_take(const char *backing, enum volume_lock_mode mode, const char *mountpoint,
		     const char *command, int *fd, struct volume_lock_holder *who);

#endif
