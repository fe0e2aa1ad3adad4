#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "backing.h"

int atomic_write_file(const char *path, const void *buf, size_t len, mode_t mode)
{
	const char *name;
	int in_volume, dirfd = backing_dir_of(path, &name, &in_volume), rc;

	if (dirfd < 0)
		return dirfd;
	rc = backing_replace(dirfd, name, buf, len, mode);
	close(dirfd);
	return rc;
}

int read_small_file(const char *path, size_t max, unsigned char **buf, size_t *len)
{
	const char *name;
	int in_volume, dirfd = backing_dir_of(path, &name, &in_volume), rc;

	if (dirfd < 0)
		return dirfd;
	/* A volume's files are never links; a path the user gave may be one. */
	rc = backing_read_small(dirfd, name, !in_volume, max, buf, len);
	close(dirfd);
	return rc;
}

int new_file_write(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600), rc = 0;
	const unsigned char *p = buf;
	ssize_t n;

	if (fd < 0)
		return -errno;
	for (size_t done = 0; rc == 0 && done < len; done += (size_t)n)
		if ((n = write(fd, p + done, len - done)) < 0)
			rc = errno == EINTR ? (n = 0) : -errno;
	if (rc == 0 && fsync(fd) != 0)
		rc = -errno;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc != 0)
		unlink(path);
	return rc;
}
