#include "volume_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../format/volume.h"

/* The record is read from the backing directory: attacker-controlled, so bounded. */
#define RECORD_MAX (PATH_MAX + 256)

/* Copies s into out, with anything that is not printable ASCII made '?': the record ends up
 * in a terminal line. */
static void printable_copy(char *out, size_t size, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n && s[i] && i + 1 < size; i++)
		out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	out[i] = '\0';
}

/*
 * Opens the lock file; an exclusive taker creates it (volumes made before it have none), but
 * only beside a volume config. Read-only where writing is not allowed: such a taker cannot
 * change the volume either. fd, or -errno (-ENOENT: nothing to lock).
 */
static int lock_open(int dir, enum volume_lock_mode mode)
{
	const int flags = O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;
	int fd = -1;

	if (mode == VOLUME_LOCK_EXCLUSIVE) {
		fd = openat(dir, VOLUME_LOCK_FILE, O_RDWR | flags);
		if (fd < 0 && errno == ENOENT &&
		    faccessat(dir, VOLUME_FILE, F_OK, AT_SYMLINK_NOFOLLOW) != 0)
			return -ENOENT;
		if (fd < 0 && errno == ENOENT)
			fd = openat(dir, VOLUME_LOCK_FILE, O_RDWR | O_CREAT | flags, 0600);
		if (fd >= 0 || (errno != EROFS && errno != EACCES && errno != EPERM))
			return fd >= 0 ? fd : -errno;
	}
	fd = openat(dir, VOLUME_LOCK_FILE, O_RDONLY | flags);
	return fd >= 0 ? fd : -errno;
}

/* Writes who we are into the lock we hold, for the message that refuses the next taker. */
static void record_self(int fd, const char *mountpoint, const char *command)
{
	char host[64] = "", mp[PATH_MAX] = "", rec[RECORD_MAX];
	int n;

	if (gethostname(host, sizeof(host) - 1) != 0)
		host[0] = '\0';
	printable_copy(mp, sizeof(mp), mountpoint ? mountpoint : "", PATH_MAX);
	n = snprintf(rec, sizeof(rec), "kekfs lock\npid %ld\nhost %s\nmount %s\ncommand %s\n",
		     (long)getpid(), host, mp, command ? command : "");
	if (ftruncate(fd, 0) != 0 || pwrite(fd, rec, (size_t)n, 0) != n)
		return; /* the lock holds without it; a refusal then names no holder */
}

/* Reads a holder's record; a field it does not have stays empty. */
static void record_read(int fd, struct volume_lock_holder *who)
{
	char rec[RECORD_MAX + 1], *save = NULL;
	ssize_t n = pread(fd, rec, RECORD_MAX, 0);

	rec[n > 0 ? n : 0] = '\0';
	for (char *line = strtok_r(rec, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *end;

		if (strncmp(line, "pid ", 4) == 0) {
			long pid = strtol(line + 4, &end, 10);
			who->pid = (*end || pid <= 0) ? 0 : pid;
		} else if (strncmp(line, "host ", 5) == 0) {
			printable_copy(who->host, sizeof(who->host), line + 5, sizeof(who->host));
		} else if (strncmp(line, "mount ", 6) == 0) {
			printable_copy(who->mountpoint, sizeof(who->mountpoint), line + 6,
				       PATH_MAX);
		} else if (strncmp(line, "command ", 8) == 0) {
			printable_copy(who->command, sizeof(who->command), line + 8,
				       sizeof(who->command));
		}
	}
}

/* Tries the lock once: 0 taken, -EWOULDBLOCK held (who filled, unless it just went: -EAGAIN). */
static int lock_try(int fd, short type, struct volume_lock_holder *who)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET};

	if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
		return 0;
	if (errno != EAGAIN && errno != EACCES)
		return errno == EOPNOTSUPP || errno == ENOSYS ? -ENOLCK : -errno;
	fl = (struct flock){.l_type = type, .l_whence = SEEK_SET};
	if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
		return -errno;
	if (fl.l_type == F_UNLCK)
		return -EAGAIN;
	memset(who, 0, sizeof(*who));
	who->exclusive = fl.l_type == F_WRLCK;
	if (who->exclusive) /* a reader writes no record: what the file holds is not its own */
		record_read(fd, who);
	return -EWOULDBLOCK;
}

/* Takes the lock on the opened lock file; records us if we are its one writer. */
static int lock_hold(int fd, const char *mountpoint, const char *command,
		     struct volume_lock_holder *who)
{
	int writable = (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDWR, rc = -EAGAIN;
	struct stat st;

	if (fstat(fd, &st) != 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	for (int tries = 0; rc == -EAGAIN && tries < 3; tries++)
		rc = lock_try(fd, writable ? F_WRLCK : F_RDLCK, who);
	if (rc == 0 && writable)
		record_self(fd, mountpoint, command);
	return rc == -EAGAIN ? -EWOULDBLOCK : rc;
}

int volume_lock_take(const char *backing, enum volume_lock_mode mode, const char *mountpoint,
		     const char *command, int *fd, struct volume_lock_holder *who)
{
	char path[PATH_MAX + 16];
	int dir, rc;

	*fd = -1;
	snprintf(path, sizeof(path), "%s/%s", backing, VOLUME_DIR);
	dir = open(path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dir < 0)
		return 0; /* no volume here to protect: the caller's next step says so */
	rc = lock_open(dir, mode);
	close(dir);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	*fd = rc;
	rc = lock_hold(*fd, mountpoint, command, who);
	if (rc != 0) {
		close(*fd);
		*fd = -1;
	}
	return rc;
}
