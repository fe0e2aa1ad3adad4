#include "linktarget.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "../backing/backing.h"
#include "objcrypt.h"

#define OBJECT_MAX (PATH_MAX + OBJ_OVERHEAD)

static int id_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

int linkref_is(const char *content)
{
	if (content[0] != LINKREF_MARK || strlen(content) != LINKREF_LEN)
		return 0;
	for (size_t i = 1; i < LINKREF_LEN; i++)
		if (!id_char(content[i]))
			return 0;
	return 1;
}

/* The ID of a side object: its hash, so that the symlink authenticates which object it got. */
static void object_id(const uint8_t *obj, size_t len, char id[LINKREF_ID_LEN + 1])
{
	uint8_t hash[32];

	crypto_generichash(hash, sizeof(hash), obj, len, NULL, 0);
	sodium_bin2base64(id, LINKREF_ID_LEN + 1, hash, sizeof(hash),
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* .kekfs/links, made (durably) if create and missing. The fd, or -errno / BACKING_ERR_*. */
static int links_open(int backing_fd, int create)
{
	int kfd = backing_dir_open(backing_fd, VOLUME_DIR, 1), fd;

	if (kfd < 0)
		return kfd;
	fd = backing_dir_open(kfd, LINKTARGET_DIR, 0);
	if (fd == -ENOENT && create) {
		if (mkdirat(kfd, LINKTARGET_DIR, 0700) != 0 && errno != EEXIST)
			fd = -errno;
		else if (fsync(kfd) != 0)
			fd = -errno;
		else
			fd = backing_dir_open(kfd, LINKTARGET_DIR, 0);
	}
	close(kfd);
	return fd;
}

int linktarget_store(int backing_fd, const uint8_t name_key[32], const uint8_t volume_id[16],
		     const char *target, char ref[LINKREF_LEN + 1])
{
	size_t len = strlen(target);
	uint8_t *obj;
	int fd, rc;

	if (len >= PATH_MAX)
		return -ENAMETOOLONG;
	obj = malloc(len + OBJ_OVERHEAD);
	if (!obj)
		return -ENOMEM;
	rc = symlink_seal_bytes(name_key, volume_id, target, len, obj);
	fd = rc == 0 ? links_open(backing_fd, 1) : rc;
	if (fd >= 0) {
		ref[0] = LINKREF_MARK;
		object_id(obj, len + OBJ_OVERHEAD, ref + 1);
		rc = backing_replace(fd, ref + 1, obj, len + OBJ_OVERHEAD, 0600);
		close(fd);
	} else {
		rc = fd;
	}
	free(obj);
	return rc;
}

ssize_t linktarget_load(int backing_fd, const uint8_t name_key[32], const uint8_t volume_id[16],
			const char *ref, char *out, size_t out_size)
{
	char id[LINKREF_ID_LEN + 1];
	unsigned char *obj;
	size_t len;
	ssize_t rc;
	int fd;

	if (!linkref_is(ref))
		return -EBADMSG;
	fd = links_open(backing_fd, 0);
	if (fd < 0)
		return fd == -ENOENT ? -EBADMSG : fd;
	rc = backing_read_small(fd, ref + 1, 0, OBJECT_MAX, &obj, &len);
	close(fd);
	if (rc == -ENOENT || rc == BACKING_ERR_TOO_BIG)
		return -EBADMSG; /* the object is gone or was never ours: as a failed tag */
	if (rc < 0)
		return rc;
	object_id(obj, len, id);
	rc = sodium_memcmp(id, ref + 1, LINKREF_ID_LEN) == 0
		 ? symlink_open_bytes(name_key, volume_id, obj, len, out, out_size)
		 : -EBADMSG;
	free(obj);
	return rc;
}

ssize_t linktarget_length(int backing_fd, const char *ref)
{
	struct stat st;
	int fd = linkref_is(ref) ? links_open(backing_fd, 0) : -EINVAL, rc;

	if (fd < 0)
		return fd;
	rc = fstatat(fd, ref + 1, &st, AT_SYMLINK_NOFOLLOW) != 0 ? -errno
	     : !S_ISREG(st.st_mode) || st.st_size < OBJ_OVERHEAD ? -EINVAL
								  : 0;
	close(fd);
	return rc < 0 ? rc : (ssize_t)(st.st_size - OBJ_OVERHEAD);
}

int linktarget_remove(int backing_fd, const char *ref)
{
	int fd = linkref_is(ref) ? links_open(backing_fd, 0) : -EINVAL, rc;

	if (fd < 0)
		return fd;
	rc = unlinkat(fd, ref + 1, 0) == 0 ? 0 : -errno;
	close(fd);
	return rc;
}

int linktarget_each(int backing_fd, int (*fn)(void *arg, int links_fd, const char *id), void *arg)
{
	int fd = links_open(backing_fd, 0), rc = 0;
	struct dirent *de;
	DIR *d;

	if (fd < 0)
		return fd;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while (rc == 0 && (de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			rc = fn(arg, dirfd(d), de->d_name);
	closedir(d);
	return rc;
}
