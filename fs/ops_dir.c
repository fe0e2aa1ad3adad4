/* FUSE ops of directories: opendir, readdir(plus), releasedir, fsyncdir, statfs. */
#include "fs_priv.h"

/* ---- directories ---- */

static struct kdir *dir_of(struct fuse_file_info *fi)
{
	return (struct kdir *)(uintptr_t)fi->fh;
}

/* Opens a pinned directory for reading (and learns its id, to decrypt its names). */
static int opendir_pinned(struct kekfs_fs *fs, struct kinode *dir, struct kdir *d)
{
	int fd, rc = fs->nk ? dir_id_get(fs, dir, d->dir_id) : 0;

	if (rc != 0)
		return rc;
	fd = openat(dir->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d->dp = fdopendir(fd);
	if (!d->dp) {
		rc = -errno;
		close(fd);
	}
	return rc;
}

void kekfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *dir = inode_of(req, ino);
	struct kdir *d = calloc(1, sizeof(*d));
	int rc = d ? pin(fs, dir) : -ENOMEM;

	if (rc == 0) {
		rc = opendir_pinned(fs, dir, d);
		unpin(fs, dir);
	}
	if (rc != 0) {
		free(d);
		fuse_reply_err(req, errno_for_kernel(rc));
		return;
	}
	handle_track(fs_of(req), &d->link, 1);
	fi->fh = (uintptr_t)d;
	fuse_reply_open(req, fi);
}

static int is_dot_or_dotdot(const char *name)
{
	return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

/*
 * The plaintext name of a backing entry, into plain (NAME_PLAIN_MAX + 1 bytes). NULL for
 * entries the mount never shows: kekfs's own files, and names that do not decrypt (logged
 * once per directory: tampered, or files not written through kekfs).
 */
static const char *entry_name(struct kekfs_fs *fs, fuse_ino_t ino, struct kinode *dir,
			      struct kdir *d, const char *bname, char *plain)
{
	if (is_dot_or_dotdot(bname))
		return bname;
	if (backing_hidden(fs, ino, bname))
		return NULL;
	if (!fs->nk)
		return bname;
	if (namedir_entry_plain(dirfd(d->dp), fs->nk, d->dir_id, bname, plain) > 0)
		return plain;
	if (!d->warned) {
		d->warned = 1;
		log_file_error(fs, dir,
			       "skipping entries whose names do not decrypt (tampered or foreign)");
	}
	return NULL;
}

/*
 * Adds the directory's current entry to a reply buffer of rem bytes at p. Returns its size
 * (more than rem: it did not fit and nothing was added), 0 to skip it, or -errno.
 */
static ssize_t readdir_add_entry(fuse_req_t req, fuse_ino_t ino, struct kdir *d, char *p,
				 size_t rem, int plus)
{
	struct kekfs_fs *fs = fs_of(req);
	struct fuse_entry_param e = {0};
	char plain[NAME_PLAIN_MAX + 1];
	const char *bname = d->entry->d_name, *name;
	off_t next = d->entry->d_off;
	size_t entsize;
	int err;

	name = entry_name(fs, ino, inode_of(req, ino), d, bname, plain);
	if (!name)
		return 0;
	if (!plus || is_dot_or_dotdot(name)) {
		e.attr.st_ino = d->entry->d_ino;
		e.attr.st_mode = (mode_t)d->entry->d_type << 12;
		return (ssize_t)(plus ? fuse_add_direntry_plus(req, p, rem, name, &e, next)
				      : fuse_add_direntry(req, p, rem, name, &e.attr, next));
	}
	err = do_lookup_backing(fs, inode_of(req, ino), bname, &e);
	if (err)
		return err == ENOENT ? 0 : -err; /* ENOENT: removed since readdir saw it */
	entsize = fuse_add_direntry_plus(req, p, rem, name, &e, next);
	if (entsize > rem) /* the lookup it counted will not reach the kernel */
		inode_table_forget(fs->inodes, (struct kinode *)(uintptr_t)e.ino, 1);
	return (ssize_t)entsize;
}

/* One readdir reply; with plus, each entry carries attributes and counts as a lookup. */
static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
		       struct fuse_file_info *fi, int plus)
{
	struct kdir *d = dir_of(fi);
	char *buf = calloc(1, size);
	size_t used = 0;
	ssize_t n;
	int err = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (offset != d->offset) {
		seekdir(d->dp, offset);
		d->entry = NULL;
		d->offset = offset;
	}
	for (;;) {
		if (!d->entry) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (!d->entry) {
				err = errno;
				break;
			}
		}
		n = readdir_add_entry(req, ino, d, buf + used, size - used, plus);
		if (n < 0)
			err = (int)-n;
		if (n < 0 || (size_t)n > size - used)
			break;
		used += (size_t)n;
		d->offset = d->entry->d_off;
		d->entry = NULL;
	}
	if (err && used == 0)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
}

void kekfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 0);
}

void kekfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 1);
}

void kekfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct kdir *d = dir_of(fi);

	(void)ino;
	handle_untrack(fs_of(req), &d->link);
	closedir(d->dp);
	free(d);
	fuse_reply_err(req, 0);
}

void kekfs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	int fd = dirfd(dir_of(fi)->dp);
	int rc = datasync ? fdatasync(fd) : fsync(fd);

	(void)ino;
	fuse_reply_err(req, rc == 0 ? 0 : errno);
}

/*
 * Backing blocks as the plaintext blocks they store written as one file: a header and each
 * chunk's nonce and tag off, and 1/STATFS_MARGIN of it kept for the backing filesystem's own
 * metadata (extent blocks of large files), so that writing or fallocating what df reports
 * succeeds (issue 19: it promised the overhead too).
 */
#define STATFS_MARGIN 512 /* 1/512 of the space, about 0.2% */

static fsblkcnt_t plain_blocks(const struct chunk_geom *g, fsblkcnt_t blocks, unsigned long frsize)
{
	uint64_t bytes = (uint64_t)blocks * frsize;

	return (fsblkcnt_t)(geom_plain_capacity(g, bytes - bytes / STATFS_MARGIN) / frsize);
}

void kekfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	const struct chunk_geom *g = &fs_of(req)->vk.geom;
	struct statvfs sv;
	unsigned long frsize;

	(void)ino;
	if (fstatvfs(inode_table_root(fs_of(req)->inodes)->fd, &sv) != 0) {
		fuse_reply_err(req, errno);
		return;
	}
	frsize = sv.f_frsize ? sv.f_frsize : sv.f_bsize;
	sv.f_blocks = plain_blocks(g, sv.f_blocks, frsize);
	sv.f_bfree = plain_blocks(g, sv.f_bfree, frsize);
	sv.f_bavail = plain_blocks(g, sv.f_bavail, frsize);
	fuse_reply_statfs(req, &sv);
}
