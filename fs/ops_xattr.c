/* FUSE ops of extended attributes: user.* names and values sealed, the rest passed on. */
#include "fs_priv.h"

/* ---- extended attributes ---- */

/*
 * Runs an xattr operation with the key its value is sealed under: the file's DEK (loaded
 * through a temporary fd if no handle is open) or, for other objects, the name key.
 */
struct xattr_key {
	const uint8_t *key;
	const uint8_t *file_id;
	int tmp_fd;
	struct kinode *ino;
};

static int xattr_key_get(struct kekfs_fs *fs, struct kinode *ino, struct xattr_key *xk)
{
	int rc;

	memset(xk, 0, sizeof(*xk));
	xk->tmp_fd = -1;
	if (!S_ISREG(ino->type)) {
		xk->key = fs->vol->name_key;
		return 0;
	}
	xk->tmp_fd = backing_open(ino, O_RDONLY);
	if (xk->tmp_fd < 0)
		return xk->tmp_fd;
	rc = crypt_acquire(fs, ino, xk->tmp_fd);
	if (rc != 0) {
		close(xk->tmp_fd);
		return rc;
	}
	xk->ino = ino;
	pthread_rwlock_rdlock(&ino->lock);
	xk->key = ino->fc.dek;
	xk->file_id = ino->fc.hdr.file_id;
	if (!xk->key) { /* a 0-byte file seen read-only (fileio_load): its header comes first */
		pthread_rwlock_unlock(&ino->lock);
		crypt_release(ino);
		close(xk->tmp_fd);
		xk->ino = NULL;
		return -EIO;
	}
	return 0;
}

static void xattr_key_put(struct xattr_key *xk)
{
	if (!xk->ino)
		return;
	pthread_rwlock_unlock(&xk->ino->lock);
	crypt_release(xk->ino);
	close(xk->tmp_fd);
}

/* system.posix_acl_access and _default: the kernel's own, kept on the backing file as is. */
static int is_acl_name(const char *name)
{
	return strncmp(name, "system.posix_acl_", strlen("system.posix_acl_")) == 0;
}

/* The backing name of an xattr: user.* names are sealed on encrypted-name volumes. */
static int xattr_backing(struct kekfs_fs *fs, const char *name, char out[256])
{
	if (fs->nk && xattr_is_encrypted(name))
		return xattr_name_encrypt(fs->nk, name, out);
	if (strlen(name) > 255)
		return -ERANGE;
	strcpy(out, name);
	return 0;
}

static void setxattr_pinned(fuse_req_t req, fuse_ino_t ino_id, const char *name, const char *value,
			    size_t size, int flags)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = inode_of(req, ino_id);
	struct xattr_key xk;
	uint8_t *sealed;
	char proc[64], bname[256];
	int rc = xattr_backing(fs, name, bname);

	if (rc != 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	proc_path(proc, ino->fd);
	if (!xattr_is_encrypted(name)) {
		rc = setxattr(proc, name, value, size, flags);
		fuse_reply_err(req, rc == 0 ? 0 : errno);
		return;
	}
	if (S_ISLNK(ino->type)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (size + OBJ_OVERHEAD > 65536) {
		fuse_reply_err(req, E2BIG);
		return;
	}
	sealed = malloc(size + OBJ_OVERHEAD);
	rc = sealed ? xattr_key_get(fs, ino, &xk) : -ENOMEM;
	if (rc == 0) {
		rc = xattr_seal(xk.key, xk.file_id, name, value, size, sealed);
		if (rc == 0)
			rc = setxattr(proc, bname, sealed, size + OBJ_OVERHEAD, flags) == 0
				 ? 0
				 : -errno;
		else
			log_file_error(fs, ino, "an xattr value could not be sealed");
		xattr_key_put(&xk);
	}
	free(sealed);
	fuse_reply_err(req, errno_for_kernel(rc));
}

static void getxattr_pinned(fuse_req_t req, fuse_ino_t ino_id, const char *name, size_t size)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = inode_of(req, ino_id);
	int enc = xattr_is_encrypted(name);
	size_t extra = enc ? OBJ_OVERHEAD : 0;
	uint8_t *buf = NULL, *plain = NULL;
	struct xattr_key xk;
	char proc[64], bname[256];
	ssize_t n;
	int rc = xattr_backing(fs, name, bname);

	if (rc != 0) {
		fuse_reply_err(req, rc == -ERANGE ? ENODATA : -rc); /* too long to exist */
		return;
	}
	proc_path(proc, ino->fd);
	n = getxattr(proc, bname, NULL, 0);
	if (n < 0) { /* a backing fs without ACLs has none: EOPNOTSUPP would deny every access */
		fuse_reply_err(req, errno == EOPNOTSUPP && is_acl_name(name) ? ENODATA : errno);
		return;
	}
	if (enc && (size_t)n < extra) {
		fuse_reply_err(req, EIO);
		return;
	}
	if (size == 0) {
		fuse_reply_xattr(req, (size_t)n - extra);
		return;
	}
	if ((size_t)n - extra > size) {
		fuse_reply_err(req, ERANGE);
		return;
	}
	buf = malloc((size_t)n + 1);
	n = buf ? getxattr(proc, bname, buf, (size_t)n) : -1;
	rc = n < 0 ? -(buf ? errno : ENOMEM) : 0;
	if (rc == 0 && enc) {
		plain = malloc((size_t)n + 1);
		rc = plain ? xattr_key_get(fs, ino, &xk) : -ENOMEM;
		if (rc == 0) {
			rc = xattr_open(xk.key, xk.file_id, name, buf, (size_t)n, plain);
			xattr_key_put(&xk);
		}
		if (rc == -EBADMSG)
			log_file_error(fs, ino, "xattr value failed authentication");
	}
	if (rc != 0)
		fuse_reply_err(req, errno_for_kernel(rc));
	else
		fuse_reply_buf(req, enc ? (char *)plain : (char *)buf, (size_t)n - extra);
	if (plain)
		secmem_wipe(plain, (size_t)n);
	free(plain);
	free(buf);
}

/*
 * The plaintext list of a pinned inode's xattr names, in a malloc'ed buffer: user.* names
 * are decrypted; ones that do not decrypt are not shown. Length or -errno.
 */
static ssize_t xattr_list_plain(struct kekfs_fs *fs, const char *proc, char **out)
{
	ssize_t n = listxattr(proc, NULL, 0), len = 0;
	char *raw = n > 0 ? malloc((size_t)n) : NULL, *plain = n > 0 ? malloc((size_t)n) : NULL;

	*out = plain;
	if (n <= 0) {
		free(raw);
		return n < 0 ? -errno : 0;
	}
	if (!raw || !plain || (n = listxattr(proc, raw, (size_t)n)) < 0) {
		len = raw && plain ? -errno : -ENOMEM;
		n = 0;
	}
	for (ssize_t i = 0; i < n; i += (ssize_t)strlen(raw + i) + 1) {
		char name[256];

		if (!xattr_is_encrypted(raw + i))
			snprintf(name, sizeof(name), "%s", raw + i);
		else if (xattr_name_decrypt(fs->nk, raw + i, name) != 0)
			continue;
		memcpy(plain + len, name, strlen(name) + 1); /* never longer than its sealed form */
		len += (ssize_t)strlen(name) + 1;
	}
	free(raw);
	return len;
}

static void listxattr_pinned(fuse_req_t req, fuse_ino_t ino_id, size_t size)
{
	struct kekfs_fs *fs = fs_of(req);
	char proc[64], *buf = NULL;
	ssize_t n;

	proc_path(proc, inode_of(req, ino_id)->fd);
	if (fs->nk) {
		n = xattr_list_plain(fs, proc, &buf);
		if (n < 0)
			fuse_reply_err(req, (int)-n);
		else if (size == 0)
			fuse_reply_xattr(req, (size_t)n);
		else if ((size_t)n > size)
			fuse_reply_err(req, ERANGE);
		else
			fuse_reply_buf(req, buf, (size_t)n);
		free(buf);
		return;
	}
	if (size == 0) {
		n = listxattr(proc, NULL, 0);
		if (n < 0)
			fuse_reply_err(req, errno);
		else
			fuse_reply_xattr(req, (size_t)n);
		return;
	}
	buf = malloc(size);
	n = buf ? listxattr(proc, buf, size) : -1;
	if (n < 0)
		fuse_reply_err(req, buf ? errno : ENOMEM);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void removexattr_pinned(fuse_req_t req, fuse_ino_t ino_id, const char *name)
{
	char proc[64], bname[256];
	int rc = xattr_backing(fs_of(req), name, bname);

	if (rc != 0) {
		fuse_reply_err(req, rc == -ERANGE ? ENODATA : -rc);
		return;
	}
	proc_path(proc, inode_of(req, ino_id)->fd);
	fuse_reply_err(req, removexattr(proc, bname) == 0 ? 0 : errno);
}

/*
 * Each xattr operation runs with its inode pinned. An ACL the kernel would not enforce is
 * refused (EOPNOTSUPP, as on a filesystem without ACLs): a stored ACL is never decoration.
 */
static int xattr_pin(fuse_req_t req, fuse_ino_t ino_id, const char *name)
{
	int rc = name && is_acl_name(name) && !fs_of(req)->posix_acl
		     ? -EOPNOTSUPP
		     : pin(fs_of(req), inode_of(req, ino_id));

	if (rc != 0)
		fuse_reply_err(req, -rc);
	return rc;
}

void kekfs_setxattr(fuse_req_t req, fuse_ino_t ino_id, const char *name, const char *value,
		    size_t size, int flags)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = inode_of(req, ino_id);

	if (xattr_pin(req, ino_id, name) == 0) {
		setxattr_pinned(req, ino_id, name, value, size, flags);
		unpin(fs, ino);
	}
}

void kekfs_getxattr(fuse_req_t req, fuse_ino_t ino_id, const char *name, size_t size)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = inode_of(req, ino_id);

	if (xattr_pin(req, ino_id, name) == 0) {
		getxattr_pinned(req, ino_id, name, size);
		unpin(fs, ino);
	}
}

void kekfs_listxattr(fuse_req_t req, fuse_ino_t ino_id, size_t size)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = inode_of(req, ino_id);

	if (xattr_pin(req, ino_id, NULL) == 0) {
		listxattr_pinned(req, ino_id, size);
		unpin(fs, ino);
	}
}

void kekfs_removexattr(fuse_req_t req, fuse_ino_t ino_id, const char *name)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = inode_of(req, ino_id);

	if (xattr_pin(req, ino_id, name) == 0) {
		removexattr_pinned(req, ino_id, name);
		unpin(fs, ino);
	}
}
