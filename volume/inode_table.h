/*
 * The inodes the kernel knows, keyed by backing (dev, ino) so hard links share one object,
 * each with an O_PATH fd of its backing object. The fds live in a cache with a budget:
 * the kernel may remember far more inodes than a process may hold fds (the limit here is
 * 20,000), so idle fds are closed and reopened from a file handle when needed. No FUSE here.
 */
#ifndef KEKFS_INODE_TABLE_H
#define KEKFS_INODE_TABLE_H

#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fileio.h"
#include "rangelock.h"

/*
 * Lock order (docs/ARCHITECTURE.md): a kinode's lock, then its chunks' range lock, then the
 * keyring's lock, then the table's table_lock, then its fd_lock. Eviction, under fd_lock, only
 * tries a kinode's lock (trywrlock), so the reverse order never waits.
 */
struct kinode {
	struct kinode *next; /* hash chain, under the table lock */
	dev_t dev;
	ino_t ino;
	mode_t type;
	uint64_t nlookup; /* under the table lock */

	/* O_PATH fd, valid while pinned; -1 while evicted. Under the fd lock. */
	int fd;
	unsigned pins;
	struct kinode *lru_prev, *lru_next; /* unpinned holders of an fd, oldest last */
	struct file_handle *handle;	    /* to reopen after eviction; NULL: never evicted */
	int forgotten; /* the kernel forgot it while pinned: the last unpin frees it */
	int reused;    /* its number now names another object: lookups skip it (table lock) */
	uint32_t generation; /* with the node id (the address), names it in file handles */
	struct kinode *id_next;			/* id hash chain, under the table lock */
	struct kinode *kept_prev, *kept_next;	/* kept after the kernel forgot it (table lock) */
	int kept; /* the same, under the fd lock: its last unpin closes its fd */

	pthread_rwlock_t lock;	  /* contents and crypto state; exclusive to change the size */
	struct range_lock chunks; /* reads and in-place writes, under lock held shared */
	int opens;		  /* users of fc, under lock held exclusively */
	struct file_crypt fc;
	uint8_t dir_id[16]; /* directories on encrypted-name volumes, under lock */
	/* The backing file as the kernel's page cache last knew it (see fuse_ops.c), under lock */
	struct stat cached;
	int cached_valid;
	int dir_id_known;
};

struct inode_table;

#define INODE_KEPT_MAX 8192 /* forgotten inodes kept for file handles, oldest dropped first */

/* A table whose root is the backing directory (root_fd, O_PATH; the table owns it). */
struct inode_table *inode_table_new(int root_fd);

/* Destroys every inode, closing fds and wiping DEKs. */
void inode_table_free(struct inode_table *t);

struct kinode *inode_table_root(struct inode_table *t);

/* The inode of a backing object with one more lookup; takes ownership of fd. NULL: ENOMEM. */
struct kinode *inode_table_get(struct inode_table *t, int fd, const struct stat *st);

/*
 * The daemon's inode of the backing object pfd opens, for a volume operation (re-wrap,
 * shred, rotate --data) to lock while it changes the file under open handles. NULL when
 * there is no daemon (t NULL) or no memory. Takes pfd either way.
 */
struct kinode *inode_table_hold(struct inode_table *t, int pfd, const struct stat *st);

/* Gives back what inode_table_hold returned; NULL is fine. */
void inode_table_release(struct inode_table *t, struct kinode *ino);

/*
 * The inode whose node id (address) is id, with one more lookup, if the table still has
 * it: the kernel asks for one it forgot when an NFS server or open_by_handle_at decodes a
 * file handle. The table keeps up to INODE_KEPT_MAX inodes that can be reopened from their
 * backing handle after the kernel forgets them, so their handles stay valid. NULL if gone.
 */
struct kinode *inode_table_get_by_id(struct inode_table *t, uint64_t id);

/* Drops n lookups; at none, the inode is kept (see above) or destroyed. */
void inode_table_forget(struct inode_table *t, struct kinode *ino, uint64_t n);

/* Makes ino->fd valid until inode_unpin (reopening an evicted inode). 0 or -errno. */
int inode_pin(struct inode_table *t, struct kinode *ino);

void inode_unpin(struct inode_table *t, struct kinode *ino);

/*
 * Closes the cached fd of a backing object that was just unlinked for good (its last name),
 * so its space is freed now rather than when the kernel forgets the inode. Later uses of
 * the inode fail with ENOENT, as they would on a plain directory.
 */
void inode_table_unlinked(struct inode_table *t, dev_t dev, ino_t ino);

/* How many O_PATH fds the table holds now, and may hold. */
unsigned inode_table_fds(struct inode_table *t, unsigned *budget);

#endif
