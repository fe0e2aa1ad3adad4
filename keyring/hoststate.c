#include "hoststate.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "../backing/backing.h"

#define STATE_FILE_MAX 32 /* a u64 in decimal and a newline */

/* $HOME, else the password database's: a daemon started by systemd may have no HOME. */
static int home_dir(char *out, size_t size)
{
	const char *home = getenv("HOME");
	struct passwd pw, *found = NULL;
	char buf[4096];

	if (!home || home[0] != '/') {
		if (getpwuid_r(geteuid(), &pw, buf, sizeof(buf), &found) != 0 || !found ||
		    found->pw_dir[0] != '/')
			return -ENOENT;
		home = found->pw_dir;
	}
	return snprintf(out, size, "%s", home) < (int)size ? 0 : -ENAMETOOLONG;
}

int hoststate_dir(char *out, size_t size)
{
	const char *xdg = getenv("XDG_STATE_HOME");
	char home[PATH_MAX];
	int rc;

	if (geteuid() == 0)
		return snprintf(out, size, "%s", HOSTSTATE_ROOT_DIR) < (int)size ? 0
										 : -ENAMETOOLONG;
	if (xdg && xdg[0] == '/') /* the spec says a relative one is to be ignored */
		return snprintf(out, size, "%s/kekfs", xdg) < (int)size ? 0 : -ENAMETOOLONG;
	if ((rc = home_dir(home, sizeof(home))) != 0)
		return rc;
	return snprintf(out, size, "%s/.local/state/kekfs", home) < (int)size ? 0 : -ENAMETOOLONG;
}

/* Makes every missing directory of path, 0700: ~/.local/state may not exist yet. */
static int make_dirs(char *path)
{
	for (char *p = strchr(path + 1, '/');; p = strchr(p + 1, '/')) {
		if (p)
			*p = '\0';
		if (mkdir(path, 0700) != 0 && errno != EEXIST) {
			int err = -errno;

			if (p)
				*p = '/';
			return err;
		}
		if (!p)
			return 0;
		*p = '/';
	}
}

/*
 * Opens the state directory (made first when create is set), refusing a symlink and a
 * directory another user owns or could write: it is what stands between an attacker's old
 * keyring and a destroyed KEK. The fd, or -errno (-ENOENT: nothing recorded yet).
 */
static int state_dir_open(int create)
{
	char path[PATH_MAX];
	struct stat st;
	int rc = hoststate_dir(path, sizeof(path)), fd;

	if (rc != 0)
		return rc;
	if (create && (rc = make_dirs(path)) != 0)
		return rc;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ELOOP || errno == ENOTDIR ? -EPERM : -errno;
	if (fstat(fd, &st) != 0 || st.st_uid != geteuid() || (st.st_mode & 077)) {
		close(fd);
		return -EPERM;
	}
	return fd;
}

static void state_name(const uint8_t volume_id[HOSTSTATE_ID_LEN],
		       char name[2 * HOSTSTATE_ID_LEN + 1])
{
	sodium_bin2hex(name, 2 * HOSTSTATE_ID_LEN + 1, volume_id, HOSTSTATE_ID_LEN);
}

/* Reads the generation in dfd's file name: 0 when there is none. */
static int state_read(int dfd, const char *name, uint64_t *generation)
{
	char buf[STATE_FILE_MAX + 1], *end;
	struct stat st;
	ssize_t n;
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	*generation = 0;
	if (fd < 0)
		return errno == ENOENT ? 0 : errno == ELOOP ? -EPERM : -errno;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > STATE_FILE_MAX) {
		close(fd);
		return -EINVAL;
	}
	n = read(fd, buf, STATE_FILE_MAX);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	errno = 0;
	*generation = strtoull(buf, &end, 10);
	if (n < 2 || buf[0] < '0' || buf[0] > '9' || errno || strcmp(end, "\n") != 0)
		return -EINVAL;
	return 0;
}

int hoststate_seen(const uint8_t volume_id[HOSTSTATE_ID_LEN], uint64_t *generation)
{
	char name[2 * HOSTSTATE_ID_LEN + 1];
	int dfd = state_dir_open(0), rc;

	*generation = 0;
	if (dfd == -ENOENT)
		return 0;
	if (dfd < 0)
		return dfd;
	state_name(volume_id, name);
	rc = state_read(dfd, name, generation);
	close(dfd);
	return rc;
}

/* Replaces dfd's file name atomically and durably (backing/backing.c's replace). */
static int state_write(int dfd, const char *name, uint64_t generation)
{
	char text[STATE_FILE_MAX + 1];
	int len = snprintf(text, sizeof(text), "%llu\n", (unsigned long long)generation);

	return backing_replace(dfd, name, text, (size_t)len, 0600);
}

int hoststate_record(const uint8_t volume_id[HOSTSTATE_ID_LEN], uint64_t generation, int lower)
{
	char name[2 * HOSTSTATE_ID_LEN + 1];
	uint64_t seen = 0;
	int dfd = state_dir_open(1), rc;

	if (dfd < 0)
		return dfd;
	state_name(volume_id, name);
	flock(dfd, LOCK_EX); /* two processes saving one volume's keyring: the higher one stays */
	rc = state_read(dfd, name, &seen);
	if ((rc == 0 || lower) && (generation > seen || (lower && generation != seen)))
		rc = state_write(dfd, name, generation);
	close(dfd); /* and the lock with it */
	return rc;
}
