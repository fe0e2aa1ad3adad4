/*
 * What a command's operand names: a path under a kekfs mount point (sent to its daemon), or
 * an unmounted volume's backing directory. Shared by the commands that act on files.
 */
#ifndef KEKFS_TARGET_H
#define KEKFS_TARGET_H

#include <stddef.h>

#include "../volume/volume_lock.h"
#include "mounts.h"

/* PATH made absolute without following its last component (a symlink stays itself). */
int target_absolute(const char *path, char *out, size_t size);

/* The kekfs mount holding abs (an absolute path), by walking up; 1 if found. */
int target_mount_of(const char *abs, struct kekfs_mount *m);

/* 1 if the mount at mountpoint is read-only. */
int target_mount_read_only(const char *mountpoint);

/* Is dir the backing directory of a volume (mounted: where)? 1, or 0 if not a volume. */
int target_is_backing(const char *dir, char *real, struct kekfs_mount *m, int *mounted);

/* Sends one command to m's daemon; its reply body (malloc'd) in *body. 0, or -1 after a
 * message. */
int target_ask(const struct kekfs_mount *m, const char *cmd, char **body);

/*
 * The path of abs inside its mount m, for the daemon (never empty: the root is refused).
 * NULL after a message naming what for.
 */
const char *target_rel(const char *path, const char *abs, const struct kekfs_mount *m,
		       const char *what);

/* realpath(path) into out (PATH_MAX); 0, or -1 after one line (for a path in a mount whose
 * daemon is gone, what to do about it). */
int target_real(const char *path, char *out);

/* 0 if real (path resolved) is a kekfs mount point or a backing directory; -1 after one line
 * saying what it is instead. */
int target_volume(const char *path, const char *real);

/* Hint for an offline command refused because a daemon holds the volume. */
#define TARGET_LOCK_HINT "unmount it first, or give the mount point to run this online"

/*
 * One line for the lock of backing that volume_lock_take refused (rc, holder who), ending in
 * hint when a daemon holds it; -1. 0 after a warning where the file system cannot lock.
 */
int target_lock_error(const char *backing, int rc, const struct volume_lock_holder *who,
		      const char *hint);

/* Takes the lock of backing for an offline command, held until the process exits; 0, or -1
 * after one line naming who holds it. */
int target_lock(const char *backing, enum volume_lock_mode mode, const char *command,
		const char *hint);

#endif
