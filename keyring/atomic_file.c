#include "atomic_file.h"

#include <unistd.h>

#include "../fs/backing.h"

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
