#include "backing.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sodium.h>

int backing_err_hostile(int err)
{
	return err <= BACKING_ERR_SYMLINK && err >= BACKING_ERR_META_LINK;
}

const char *backing_strerror(int err)
{
	switch (err) {
	case BACKING_ERR_SYMLINK:
		return "a symbolic link, which kekfs never makes there: the backing directory has "
		       "been tampered with";
	case BACKING_ERR_FIFO:
		return "not a regular file (a FIFO): the backing directory has been tampered with";
	case BACKING_ERR_DIR:
		return "not a regular file (a directory): the backing directory has been tampered "
		       "with";
	case BACKING_ERR_SPECIAL:
		return "not a regular file (a device or socket): the backing directory has been "
		       "tampered with";
	case BACKING_ERR_TOO_BIG:
		return "larger than any file kekfs writes there: the backing directory has been "
		       "tampered with";
	case BACKING_ERR_NOT_DIR:
		return "not a directory: the backing directory has been tampered with";
	case BACKING_ERR_OWNER:
		return "its directory " VOLUME_DIR " belongs to another user or is writable by "
		       "group or others: chown it to the volume's owner and chmod go-w it";
	case BACKING_ERR_META_LINK:
		return "its directory " VOLUME_DIR " is a symbolic link, which kekfs never makes: "
		       "the backing directory has been tampered with";
	default:
		return strerror(-err);
	}
}

/* What a file type is as a BACKING_ERR_* when a regular file was expected; 0 if it is one. */
static int not_regular(mode_t mode)
{
	if (S_ISREG(mode))
		return 0;
	if (S_ISLNK(mode))
		return BACKING_ERR_SYMLINK;
	if (S_ISFIFO(mode))
		return BACKING_ERR_FIFO;
	return S_ISDIR(mode) ? BACKING_ERR_DIR : BACKING_ERR_SPECIAL;
}

/* An open that failed (-err): a BACKING_ERR_* if a link or special file is what stopped it. */
static int open_failure(int dirfd, const char *name, int err)
{
	struct stat st;

	if ((err == ELOOP || err == ENXIO || err == ENOTDIR || err == EISDIR) &&
	    fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && not_regular(st.st_mode))
		return not_regular(st.st_mode);
	return -err;
}

/* A volume's own directory: the effective user's, root's or the backing owner's; go-w. */
static int owner_ok(int parentfd, const struct stat *st)
{
	struct stat parent;

	if (st->st_mode & (S_IWGRP | S_IWOTH))
		return 0;
	if (st->st_uid == geteuid() || st->st_uid == 0)
		return 1;
	return fstat(parentfd, &parent) == 0 && st->st_uid == parent.st_uid;
}

/* The .kekfs backing_meta_pin opened, and which backing directory it belongs to. Written once
 * before the daemon's threads start, only read after. */
static struct {
	int fd;
	dev_t dev;
	ino_t ino;
} pinned_meta = {.fd = -1};

/* A dup of the pinned .kekfs if `name` of dirfd is it, else -1. */
static int pinned_meta_dup(int dirfd, const char *name)
{
	struct stat st;

	if (pinned_meta.fd < 0 || !name || strcmp(name, VOLUME_DIR) != 0 || fstat(dirfd, &st) != 0 ||
	    st.st_dev != pinned_meta.dev || st.st_ino != pinned_meta.ino)
		return -1;
	return fcntl(pinned_meta.fd, F_DUPFD_CLOEXEC, 0);
}

int backing_dir_open(int dirfd, const char *name, int check_owner)
{
	int self = !name || !name[0];
	int fd = check_owner ? pinned_meta_dup(dirfd, name) : -1;
	struct stat st;

	if (fd >= 0)
		return fd;
	fd = openat(dirfd, self ? "." : name,
		    O_RDONLY | O_DIRECTORY | O_CLOEXEC | (self ? 0 : O_NOFOLLOW));

	if (fd < 0) {
		int rc = open_failure(dirfd, name, errno);

		if (rc == BACKING_ERR_SYMLINK && check_owner)
			return BACKING_ERR_META_LINK;
		return rc == BACKING_ERR_FIFO || rc == BACKING_ERR_SPECIAL ? BACKING_ERR_NOT_DIR
									   : rc;
	}
	if (check_owner && (fstat(fd, &st) != 0 || !owner_ok(dirfd, &st))) {
		close(fd);
		return BACKING_ERR_OWNER;
	}
	return fd;
}

int backing_meta_pin(int backing_fd)
{
	struct stat st;
	int fd;

	if (fstat(backing_fd, &st) != 0)
		return -errno;
	fd = backing_dir_open(backing_fd, VOLUME_DIR, 1);
	if (fd < 0)
		return fd;
	if (pinned_meta.fd >= 0)
		close(pinned_meta.fd);
	pinned_meta.fd = fd;
	pinned_meta.dev = st.st_dev;
	pinned_meta.ino = st.st_ino;
	return 0;
}

int backing_meta_path(const char *backing, const char *name, char *out, size_t size)
{
	int n = name ? snprintf(out, size, "%s/%s/%s", backing, VOLUME_DIR, name)
		     : snprintf(out, size, "%s/%s", backing, VOLUME_DIR);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int backing_dir_of(const char *path, const char **name, int *in_volume)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/'), *base;
	size_t n;
	int parent, fd;

	*name = slash ? slash + 1 : path;
	n = slash ? (size_t)(slash - path) : 0;
	if (n >= sizeof(dir))
		return -ENAMETOOLONG;
	memcpy(dir, path, n);
	dir[n] = '\0';
	if (!slash)
		strcpy(dir, ".");
	else if (n == 0)
		strcpy(dir, "/");
	base = strrchr(dir, '/');
	base = base ? base + 1 : dir;
	*in_volume = strcmp(base, VOLUME_DIR) == 0;
	if (!*in_volume)
		return (fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ? -errno : fd;
	dir[base - dir] = '\0';
	parent = open(base == dir ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (parent < 0)
		return -errno;
	fd = backing_dir_open(parent, VOLUME_DIR, 1);
	close(parent);
	return fd;
}

/* Reads exactly len bytes (the size fstat gave); short if the file shrank. */
static size_t read_upto(int fd, unsigned char *p, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

int backing_read_small(int dirfd, const char *name, int follow, size_t max, unsigned char **buf,
		       size_t *len)
{
	int flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW);
	int fd = openat(dirfd, name, flags), rc;
	struct stat st;
	unsigned char *p;

	if (fd < 0)
		return follow ? -errno : open_failure(dirfd, name, errno);
	rc = fstat(fd, &st) != 0 ? -errno : not_regular(st.st_mode);
	if (rc == 0 && (size_t)st.st_size > max)
		rc = BACKING_ERR_TOO_BIG;
	p = rc == 0 ? malloc((size_t)st.st_size + 1) : NULL;
	if (rc == 0 && !p)
		rc = -ENOMEM;
	if (rc == 0) {
		*len = read_upto(fd, p, (size_t)st.st_size);
		p[*len] = '\0';
		*buf = p;
	}
	close(fd);
	return rc;
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A temp name nobody can guess: name + ".tmp." + 16 random hex digits. */
static int temp_name(const char *name, char out[NAME_MAX + 1])
{
	unsigned char rnd[8];
	char hex[sizeof(rnd) * 2 + 1];

	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
	return snprintf(out, NAME_MAX + 1, "%.200s.tmp.%s", name, hex) > NAME_MAX ? -ENAMETOOLONG
										  : 0;
}

/*
 * An unnamed file in dirfd (O_TMPFILE), or where the file system has none, a new file under
 * tmp that did not exist (O_EXCL: never a planted name or link). *named says which.
 */
static int temp_create(int dirfd, const char *tmp, mode_t mode, int *named)
{
	int fd = openat(dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, mode);

	*named = fd < 0;
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd < 0 ? -errno : fd;
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	return fd < 0 ? -errno : fd;
}

/* Gives an O_TMPFILE file the name tmp; linkat never replaces or follows what is there. */
static int temp_link(int fd, int dirfd, const char *tmp)
{
	char proc[64];

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (linkat(AT_FDCWD, proc, dirfd, tmp, AT_SYMLINK_FOLLOW) == 0)
		return 0;
	return linkat(fd, "", dirfd, tmp, AT_EMPTY_PATH) == 0 ? 0 : -errno;
}

int backing_replace(int dirfd, const char *name, const void *buf, size_t len, mode_t mode)
{
	char tmp[NAME_MAX + 1];
	int named, fd, rc = temp_name(name, tmp), linked;

	if (rc != 0)
		return rc;
	fd = temp_create(dirfd, tmp, mode, &named);
	if (fd < 0)
		return fd;
	rc = write_all(fd, buf, len);
	if (rc == 0 && fchmod(fd, mode) != 0)
		rc = -errno;
	if (rc == 0 && fsync(fd) != 0)
		rc = -errno;
	if (rc == 0 && !named)
		rc = temp_link(fd, dirfd, tmp);
	linked = named || rc == 0;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && renameat(dirfd, tmp, dirfd, name) != 0)
		rc = -errno;
	if (rc != 0) {
		if (linked)
			unlinkat(dirfd, tmp, 0);
		return rc;
	}
	return fsync(dirfd) == 0 ? 0 : -errno;
}

int backing_open_file(int dirfd, const char *name, int flags, mode_t mode)
{
	int fd = openat(dirfd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, mode);
	struct stat st;
	int rc;

	if (fd < 0)
		return open_failure(dirfd, name, errno);
	rc = fstat(fd, &st) != 0 ? -errno : not_regular(st.st_mode);
	if (rc != 0) {
		close(fd);
		return rc;
	}
	return fd;
}

int backing_file_present(int dirfd, const char *name)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return errno == ENOENT ? 0 : -errno;
	return not_regular(st.st_mode) ? not_regular(st.st_mode) : 1;
}

/* The fallback of backing_open_beneath: one O_NOFOLLOW step per component, ".." refused. */
static int open_walk(int rootfd, const char *path, int flags)
{
	char comp[NAME_MAX + 1];
	int dirfd = openat(rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC), fd;

	while (dirfd >= 0) {
		size_t n = strcspn(path, "/");
		const char *next = path + n + strspn(path + n, "/");

		if (n > NAME_MAX || (n == 2 && path[0] == '.' && path[1] == '.')) {
			close(dirfd);
			errno = n > NAME_MAX ? ENAMETOOLONG : EXDEV;
			return -errno;
		}
		memcpy(comp, n ? path : ".", n ? n : 1);
		comp[n ? n : 1] = '\0';
		fd = *next ? openat(dirfd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
			   : openat(dirfd, comp, flags | O_NOFOLLOW | O_CLOEXEC, 0);
		close(dirfd);
		if (!*next)
			return fd < 0 ? -errno : fd;
		dirfd = fd;
		path = next;
	}
	return -errno;
}

int backing_open_beneath(int rootfd, const char *path, int flags)
{
	struct open_how how = {
	    .flags = (unsigned long long)(flags | O_NOFOLLOW | O_CLOEXEC),
	    .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	long fd;

	path += strspn(path, "/");
	fd = syscall(SYS_openat2, rootfd, *path ? path : ".", &how, sizeof(how));
	if (fd >= 0)
		return (int)fd;
	return errno == ENOSYS ? open_walk(rootfd, path, flags) : -errno;
}

int backing_entry_type(int dirfd, const char *name)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return DT_UNKNOWN;
	return S_ISDIR(st.st_mode)   ? DT_DIR
	       : S_ISREG(st.st_mode) ? DT_REG
	       : S_ISLNK(st.st_mode) ? DT_LNK
				     : DT_UNKNOWN;
}
