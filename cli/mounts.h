/* Finding kekfs mounts in /proc/self/mountinfo, by mount point or by backing directory. */
#ifndef KEKFS_MOUNTS_H
#define KEKFS_MOUNTS_H

#include <limits.h>
#include <sys/types.h>

struct kekfs_mount {
	char mountpoint[PATH_MAX];
	char backing[PATH_MAX];
	uid_t uid; /* the daemon's user (user_id=) */
};

/* 1 if path (a real path) is a mount point of any kind. */
int path_is_mounted(const char *path);

/* 1 and fills m if path is a kekfs mount point, or (by_backing) a mounted backing dir. */
int kekfs_mount_find(const char *path, int by_backing, struct kekfs_mount *m);

/* Every kekfs mount on the machine (up to max); returns how many. */
int kekfs_mounts_all(struct kekfs_mount *m, int max);

/*
 * The processes that keep mp busy (an open file, a cwd or root, a mapping under it), as
 * "pid N (COMM), ..." in out (the first few); returns how many there are.
 */
int mount_holders(const char *mp, char *out, size_t size);

#endif
