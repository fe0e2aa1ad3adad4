#include "namedir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "../backing/backing.h"

int bname_make(const struct name_keys *nk, const uint8_t dir_id[NAME_DIRID_LEN], const char *name,
	       struct bname *b)
{
	int n;

	b->is_long = 0;
	if (!nk) {
		if (strnlen(name, NAME_PLAIN_MAX + 1) > NAME_PLAIN_MAX)
			return -ENAMETOOLONG;
		strcpy(b->name, name);
		strcpy(b->enc, name);
		return 0;
	}
	n = name_encrypt(nk, dir_id, name, b->enc);
	if (n < 0)
		return n;
	b->is_long = n > NAME_BACKING_MAX;
	if (b->is_long)
		name_long_backing(b->enc, b->name);
	else
		memcpy(b->name, b->enc, (size_t)n + 1);
	return 0;
}

/*
 * Reads exactly len bytes of a small file in dirfd; -EIO for any other size, and for a link,
 * FIFO or anything else planted there (never followed, never waited on).
 */
static int read_exact(int dirfd, const char *name, void *buf, size_t len)
{
	int fd = backing_open_file(dirfd, name, O_RDONLY | O_NOATIME, 0);
	ssize_t n;
	char extra;

	if (fd == -EPERM)
		fd = backing_open_file(dirfd, name, O_RDONLY, 0);
	if (fd < 0)
		return fd == -ENOENT || backing_err_hostile(fd) ? -EIO : fd;
	n = read(fd, buf, len);
	if (n == (ssize_t)len && read(fd, &extra, 1) != 0)
		n = -1;
	close(fd);
	return n == (ssize_t)len ? 0 : -EIO;
}

/* Creates a small file durably (write, fsync); it must not exist yet. */
static int write_new(int dirfd, const char *name, const void *buf, size_t len, mode_t mode)
{
	int fd = openat(dirfd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, mode);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, buf, len) != (ssize_t)len || fsync(fd) != 0)
		rc = errno ? -errno : -EIO;
	close(fd);
	if (rc != 0)
		unlinkat(dirfd, name, 0);
	return rc;
}

int namedir_read_id(int dirfd, uint8_t id[NAME_DIRID_LEN])
{
	return read_exact(dirfd, NAME_DIRID_FILE, id, NAME_DIRID_LEN);
}

/* Writes a directory's id and syncs the directory, so the id survives a crash. */
static int write_id(int parentfd, const char *dirname, const uint8_t id[NAME_DIRID_LEN])
{
	int fd = openat(parentfd, dirname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -errno;
	rc = write_new(fd, NAME_DIRID_FILE, id, NAME_DIRID_LEN, 0400);
	if (rc == 0 && fsync(fd) != 0)
		rc = -errno;
	close(fd);
	return rc;
}

/*
 * Gives the new directory tmp its name, never replacing anything. Where renameat2 cannot
 * promise that (GlusterFS, some NFS servers: EINVAL), a plain rename still cannot replace a
 * kekfs directory, which always holds its id file and so is never empty, and fails on a
 * file or symlink (ENOTDIR). 0 or -errno; EEXIST whenever the name is taken.
 */
static int dir_move_into_place(int parentfd, const char *tmp, const char *name)
{
	static atomic_int no_noreplace; /* this file system refused RENAME_NOREPLACE once */
	struct stat st;

	if (!atomic_load(&no_noreplace)) {
		if (renameat2(parentfd, tmp, parentfd, name, RENAME_NOREPLACE) == 0)
			return 0;
		if (errno != EINVAL)
			return -errno;
		atomic_store(&no_noreplace, 1);
	}
	if (fstatat(parentfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return -EEXIST; /* taken already: the rename below is for a race only */
	if (renameat(parentfd, tmp, parentfd, name) == 0)
		return 0;
	return errno == ENOTEMPTY || errno == ENOTDIR || errno == EISDIR ? -EEXIST : -errno;
}

int namedir_mkdir(int parentfd, const char *name, mode_t mode)
{
	uint8_t id[NAME_DIRID_LEN], rnd[8];
	char tmp[sizeof(NAME_TMPDIR_PREFIX) + 16];
	int rc;

	randombytes_buf(id, sizeof(id));
	randombytes_buf(rnd, sizeof(rnd));
	memcpy(tmp, NAME_TMPDIR_PREFIX, sizeof(NAME_TMPDIR_PREFIX) - 1);
	sodium_bin2hex(tmp + sizeof(NAME_TMPDIR_PREFIX) - 1, 17, rnd, sizeof(rnd));
	/* Owner write access until the id is in; the asked-for mode comes after. */
	if (mkdirat(parentfd, tmp, mode | S_IRWXU) != 0)
		return -errno;
	rc = write_id(parentfd, tmp, id);
	if (rc == 0 && (mode & S_IRWXU) != S_IRWXU && fchmodat(parentfd, tmp, mode, 0) != 0)
		rc = -errno;
	if (rc == 0)
		rc = dir_move_into_place(parentfd, tmp, name);
	if (rc != 0) {
		int fd = openat(parentfd, tmp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

		if (fd >= 0) {
			unlinkat(fd, NAME_DIRID_FILE, 0);
			close(fd);
		}
		unlinkat(parentfd, tmp, AT_REMOVEDIR);
	}
	return rc;
}

int namedir_entry_plain(int dirfd, const struct name_keys *nk, const uint8_t dir_id[NAME_DIRID_LEN],
			const char *bname, char plain[NAME_PLAIN_MAX + 1])
{
	char enc[NAME_ENC_SIZE];
	int n;

	if (name_is_long(bname) && namedir_long_read(dirfd, bname, enc) != 0)
		return -ENOLINK;
	n = name_decrypt(nk, dir_id, name_is_long(bname) ? enc : bname, plain);
	return n > 0 ? n : -EBADMSG;
}

int namedir_side_orphan(int dirfd, const char *name)
{
	struct stat st;

	return name[0] == '.' && name_is_long(name + 1) &&
	       fstatat(dirfd, name + 1, &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT;
}

/*
 * A directory a crash left under its temporary name (namedir_mkdir): removed with its id, if
 * that is all it holds. Never one being made: the kernel does not run a mkdir in a directory
 * while that directory is being removed or renamed over. 1 if name was one and is gone.
 */
static int drop_tmpdir(int dirfd, const char *name)
{
	int fd;

	if (strncmp(name, NAME_TMPDIR_PREFIX, sizeof(NAME_TMPDIR_PREFIX) - 1) != 0)
		return 0;
	fd = openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0) {
		unlinkat(fd, NAME_DIRID_FILE, 0);
		close(fd);
	}
	return unlinkat(dirfd, name, AT_REMOVEDIR) == 0;
}

/*
 * 0 if the directory holds only its id and what crashes leave (orphaned side files and
 * temporary directories, dropped), else -ENOTEMPTY.
 */
static int only_id_left(int dirfd)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	int rc = 0;

	if (!d) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		return rc;
	}
	while (rc == 0 && (de = readdir(d)) != NULL) {
		const char *n = de->d_name;

		if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0 || strcmp(n, NAME_DIRID_FILE) == 0)
			continue;
		if (namedir_side_orphan(dirfd, n))
			unlinkat(dirfd, n, 0);
		else if (!drop_tmpdir(dirfd, n))
			rc = -ENOTEMPTY;
	}
	closedir(d);
	return rc;
}

int namedir_victim_prepare(int parentfd, const char *name, uint8_t saved[NAME_DIRID_LEN])
{
	int fd = openat(parentfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
	rc = only_id_left(fd);
	if (rc == 0 && namedir_read_id(fd, saved) == 0)
		rc = unlinkat(fd, NAME_DIRID_FILE, 0) == 0 ? 1 : -errno;
	close(fd);
	return rc;
}

void namedir_victim_restore(int parentfd, const char *name, const uint8_t id[NAME_DIRID_LEN])
{
	(void)write_id(parentfd, name, id);
}

int namedir_rmdir(int parentfd, const char *name)
{
	uint8_t id[NAME_DIRID_LEN];
	int had_id = namedir_victim_prepare(parentfd, name, id);
	struct stat st;

	if (had_id < 0)
		return had_id;
	if (had_id == 0 && fstatat(parentfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    !S_ISDIR(st.st_mode))
		return -ENOTDIR;
	if (unlinkat(parentfd, name, AT_REMOVEDIR) == 0)
		return 0;
	int rc = -errno;
	if (had_id)
		namedir_victim_restore(parentfd, name, id);
	return rc;
}

/* "." + the long backing name: where its full encoding is kept. */
static void side_name(const char *backing, char out[NAME_LONG_LEN + 2])
{
	out[0] = '.';
	memcpy(out + 1, backing, NAME_LONG_LEN + 1);
}

int namedir_long_write(int dirfd, const struct bname *b)
{
	char side[NAME_LONG_LEN + 2];
	int rc;

	if (!b->is_long)
		return 0;
	side_name(b->name, side);
	rc = write_new(dirfd, side, b->enc, strlen(b->enc), 0444);
	return rc == -EEXIST ? 0 : rc; /* another name of the same entry already wrote it */
}

void namedir_long_remove(int dirfd, const struct bname *b)
{
	char side[NAME_LONG_LEN + 2];

	if (!b->is_long)
		return;
	side_name(b->name, side);
	unlinkat(dirfd, side, 0);
}

int namedir_long_read(int dirfd, const char *backing, char enc[NAME_ENC_SIZE])
{
	char side[NAME_LONG_LEN + 2], check[NAME_LONG_LEN + 1];
	int fd, rc = 0;
	ssize_t n;

	side_name(backing, side);
	fd = backing_open_file(dirfd, side, O_RDONLY, 0);
	if (fd < 0)
		return backing_err_hostile(fd) ? -EIO : fd;
	n = read(fd, enc, NAME_ENC_SIZE);
	close(fd);
	if (n <= NAME_BACKING_MAX || n >= NAME_ENC_SIZE)
		return -EBADMSG;
	enc[n] = '\0';
	name_long_backing(enc, check);
	if (strcmp(check, backing) != 0) /* a side file swapped in from another entry */
		rc = -EBADMSG;
	return rc;
}

/* Appends "/" + name to out; -ENAMETOOLONG if it does not fit. */
static int path_append(char *out, size_t out_size, size_t *len, const char *name)
{
	size_t n = strlen(name);

	if (*len + 1 + n + 1 > out_size)
		return -ENAMETOOLONG;
	out[(*len)++] = '/';
	memcpy(out + *len, name, n + 1);
	*len += n;
	return 0;
}

/* Steps into backing directory name of *dirfd, learning its id. */
static int path_descend(int *dirfd, const char *name, const struct name_keys *nk,
			uint8_t id[NAME_DIRID_LEN])
{
	int fd = openat(*dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	if (nk)
		rc = namedir_read_id(fd, id);
	close(*dirfd);
	*dirfd = fd;
	return rc;
}

/* Walks path one component at a time; step turns a component into its other form. */
static int path_walk(int rootfd, const struct name_keys *nk, const uint8_t root_id[NAME_DIRID_LEN],
		     const char *path, char *out, size_t out_size, int encrypt)
{
	uint8_t id[NAME_DIRID_LEN];
	char comp[NAME_ENC_SIZE], plain[NAME_PLAIN_MAX + 1];
	const char *p = path, *next;
	int dirfd = dup(rootfd), rc = 0;
	struct bname b;
	size_t len = 0;

	memcpy(id, root_id, NAME_DIRID_LEN);
	out[0] = '\0';
	if (dirfd < 0)
		return -errno;
	for (; rc == 0 && *p; p = next) {
		size_t n = strcspn(p, "/");

		next = p + n + (p[n] == '/');
		if (n == 0 || (n == 1 && p[0] == '.'))
			continue;
		if (n >= sizeof(comp) || (n == 2 && p[0] == '.' && p[1] == '.'))
			rc = n >= sizeof(comp) ? -ENAMETOOLONG : -EINVAL;
		if (rc != 0)
			break;
		memcpy(comp, p, n);
		comp[n] = '\0';
		if (encrypt) {
			rc = bname_make(nk, id, comp, &b);
			if (rc == 0)
				rc = path_append(out, out_size, &len, b.name);
		} else if (!nk) {
			rc = path_append(out, out_size, &len, comp);
		} else {
			rc = namedir_entry_plain(dirfd, nk, id, comp, plain) > 0 ? 0 : -EBADMSG;
			if (rc == 0)
				rc = path_append(out, out_size, &len, plain);
		}
		if (rc == 0 && next[strspn(next, "/")] != '\0')
			rc = path_descend(&dirfd, encrypt ? b.name : comp, nk, id);
	}
	close(dirfd);
	if (rc == 0 && len == 0)
		rc = -EINVAL;
	return rc;
}

int namepath_encrypt(int rootfd, const struct name_keys *nk, const uint8_t root_id[NAME_DIRID_LEN],
		     const char *plain, char *out, size_t out_size)
{
	return path_walk(rootfd, nk, root_id, plain, out, out_size, 1);
}

int namepath_decrypt(int rootfd, const struct name_keys *nk, const uint8_t root_id[NAME_DIRID_LEN],
		     const char *backing, char *out, size_t out_size)
{
	return path_walk(rootfd, nk, root_id, backing, out, out_size, 0);
}

int namepath_open_parent(int rootfd, char *bpath, const char **last)
{
	char *slash;
	int fd;

	while (*bpath == '/')
		bpath++;
	slash = strrchr(bpath, '/');
	if (slash) {
		*slash = '\0';
		*last = slash + 1;
		fd = backing_open_beneath(rootfd, bpath, O_RDONLY | O_DIRECTORY);
		*slash = '/';
	} else {
		*last = bpath;
		fd = backing_open_beneath(rootfd, ".", O_RDONLY | O_DIRECTORY);
	}
	return fd;
}
