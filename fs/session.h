/*
 * The daemon's FUSE session: made with kekfs's mount options, mounted, and served until the
 * mount goes away or a signal stops it. It keeps libfuse inside fs/: the kekfs command
 * (cli/cmd_mount.c) starts a mount through this header, which names no FUSE type.
 */
#ifndef KEKFS_SESSION_H
#define KEKFS_SESSION_H

#include "fuse_ops.h"

struct session_opts {
	const char *backing;	 /* shown as the mount's source (fsname) */
	const char *kernel_opts; /* nosuid, nodev, ... as they came, or "" */
	int allow_other, default_permissions, read_only;
};

enum session_err {
	SESSION_OK = 0,
	SESSION_ERR_START = -1,	 /* libfuse refused the options, or out of memory */
	SESSION_ERR_MOUNT = -2,	 /* the mount failed: libfuse printed why */
	SESSION_ERR_ATTACH = -3, /* /dev/fuse could not be taken over (fs/fuse_ops.c) */
};

struct session;

/*
 * Makes the session for fs and mounts it on mountpoint. SESSION_OK or why not; *out is set
 * either way once anything was made, and session_end undoes it.
 */
int session_mount(const struct session_opts *o, struct kekfs_fs *fs, const char *mountpoint,
		  struct session **out);

/* Serves requests until unmounted (0) or a fatal error; SIGTERM, SIGINT, SIGHUP are a clean
 * stop. */
int session_serve(struct session *s);

/* Unmounts (if mounted) and frees; NULL is fine. */
void session_end(struct session *s);

#endif
