/*
 * What a command's operand names: a path under a kekfs mount point (sent to its daemon), or
 * an unmounted volume's backing directory. Shared by the commands that act on files.
 */
#ifndef KEKFS_TARGET_H
#define KEKFS_TARGET_H

#include <stddef.h>

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

#endif
