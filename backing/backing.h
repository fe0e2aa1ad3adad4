/*
 * Safe access to the backing directory, its tree and its .kekfs/ directory. Everything
 * there is written by whoever can write the backing directory (a synced folder, a NAS, a
 * user's volume mounted by root), so nothing is followed, nothing blocks, and nothing is
 * read unless it is a regular file of a size the caller expects. No FUSE here.
 */
#ifndef KEKFS_BACKING_H
#define KEKFS_BACKING_H

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* The volume's metadata directory in the backing directory, the one place kekfs keeps its
 * own files, opened with the checks below. */
#define VOLUME_DIR ".kekfs"

/* What was found where a metadata file or directory should be; beyond errno's range. */
enum backing_err {
	BACKING_ERR_SYMLINK = -4101,   /* a symbolic link */
	BACKING_ERR_FIFO = -4102,      /* a FIFO (would block whoever reads it) */
	BACKING_ERR_DIR = -4103,       /* a directory where a file should be */
	BACKING_ERR_SPECIAL = -4104,   /* a device or a socket */
	BACKING_ERR_TOO_BIG = -4105,   /* larger than any file kekfs writes there */
	BACKING_ERR_NOT_DIR = -4106,   /* not a directory where one should be */
	BACKING_ERR_OWNER = -4107,     /* .kekfs owned by another user, or group/other-writable */
	BACKING_ERR_META_LINK = -4108, /* .kekfs itself is a symbolic link */
};

/* 1 for a BACKING_ERR_*: the backing directory holds what kekfs never writes there. */
int backing_err_hostile(int err);

/* "not a regular file (a FIFO): ...tampered with", or strerror for a plain -errno. */
const char *backing_strerror(int err);

/*
 * Opens the directory `name` of dirfd (NULL or "": dirfd itself) for the *at() calls below:
 * never through a symbolic link, and if check_owner, owned by the effective user, root or the
 * owner of dirfd, and writable by nobody else. The fd, or -errno / BACKING_ERR_*.
 */
int backing_dir_open(int dirfd, const char *name, int check_owner);

/*
 * Pins the .kekfs of the backing directory backing_fd for the rest of the process (a daemon,
 * at mount): every later backing_dir_open or backing_dir_of of that .kekfs is this same
 * directory, so a .kekfs renamed away and replaced while mounted receives nothing. Call once,
 * before other threads start. 0, or -errno / BACKING_ERR_*.
 */
int backing_meta_pin(int backing_fd);

/*
 * The path of `name` in the .kekfs of the backing directory (name NULL: of .kekfs itself), as
 * the path-taking loaders and messages want it: every open of it goes back through
 * backing_dir_of's checks. 0, or -ENAMETOOLONG.
 */
int backing_meta_path(const char *backing, const char *name, char *out, size_t size);

/*
 * Opens the directory of a file path ("/srv/vol/.kekfs/volume") and points *name at the
 * last component. A directory named .kekfs is a volume's (*in_volume 1): opened with
 * backing_dir_open's checks; any other is the user's own, followed as given (a keyring kept
 * with --keyring PATH). The fd, or -errno / BACKING_ERR_*.
 */
int backing_dir_of(const char *path, const char **name, int *in_volume);

/*
 * Reads all of the regular file `name` in dirfd (at most max bytes) into a malloc'd buffer
 * (NUL-terminated for convenience). Never blocks on a FIFO; follow 0: never a symbolic link.
 * 0, -ENOENT, -errno or BACKING_ERR_*.
 */
int backing_read_small(int dirfd, const char *name, int follow, size_t max, unsigned char **buf,
		       size_t *len);

/*
 * Replaces `name` in dirfd atomically and durably with buf: an unnamed temp file (O_TMPFILE,
 * else an O_EXCL random name), written, fchmod'ed, fsynced, renamed over name, directory
 * fsynced. A crash leaves the old or the new contents; nothing outside dirfd is touched.
 */
int backing_replace(int dirfd, const char *name, const void *buf, size_t len, mode_t mode);

/*
 * Opens a marker or append file in dirfd: flags (O_RDONLY, O_WRONLY, O_RDWR, O_APPEND,
 * O_CREAT, O_TRUNC) plus O_NOFOLLOW | O_NONBLOCK, and it must be a regular file. The fd, or
 * -errno / BACKING_ERR_*.
 */
int backing_open_file(int dirfd, const char *name, int flags, mode_t mode);

/* 1 if the marker `name` in dirfd exists as a regular file, 0 if absent, or BACKING_ERR_*. */
int backing_file_present(int dirfd, const char *name);

/*
 * Opens path (relative, "/"-separated) beneath rootfd: no symbolic link, ".." or magic link
 * on the way or at the end, even if one is swapped in while it resolves. openat2, or where
 * the kernel lacks it a walk one O_NOFOLLOW component at a time. The fd, or -errno.
 */
int backing_open_beneath(int rootfd, const char *path, int flags);

/* The type of dirfd's entry name, never from readdir's d_type: DT_REG, DT_DIR, DT_LNK or
 * DT_UNKNOWN (anything else, or gone). */
int backing_entry_type(int dirfd, const char *name);

#endif
