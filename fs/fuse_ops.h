/* The FUSE low-level operations of kekfs: a backing directory shown decrypted. */
#ifndef KEKFS_FUSE_OPS_H
#define KEKFS_FUSE_OPS_H

#include <sys/types.h>

#include "../format/volume.h"
#include "../keyring/keyring.h"
#include "../volume/inode_table.h"

struct kekfs_fs_config {
	int backing_fd; /* O_PATH fd of the backing directory; the fs takes ownership */
	struct volume *vol;
	struct keyring *kr;
	const char *mountpoint; /* to find the mount's dirty-page limit; may be NULL */
};

struct kekfs_fs;

/* The state every operation shares; NULL on allocation failure. */
struct kekfs_fs *kekfs_fs_new(const struct kekfs_fs_config *cfg);

/* Closes every backing fd and wipes every DEK still held. */
void kekfs_fs_free(struct kekfs_fs *fs);

/* The inode table, for work beside FUSE (re-wrap) that must take the same inode locks. */
struct inode_table *kekfs_fs_inodes(struct kekfs_fs *fs);

/* The O_PATH fd of the backing directory (owned by the fs). */
int kekfs_fs_backing_fd(struct kekfs_fs *fs);

/* Drops the kernel's cached pages of ino and its entry name in parent (either may be NULL). */
void kekfs_fs_invalidate(void *arg, struct kinode *parent, const char *name, struct kinode *ino);

#endif
