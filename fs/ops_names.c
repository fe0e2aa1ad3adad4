/* FUSE ops that make and remove names: mknod, mkdir, symlink, readlink, link, unlink, rmdir,
 * rename. */
#include "fs_priv.h"

/* ---- creating names ---- */

/* New objects belong to the caller, as on a local filesystem (the daemon may run as root). */
static int set_owner(struct kekfs_fs *fs, fuse_req_t req, struct kinode *dir, int fd,
		     const char *name)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct stat dst;
	gid_t gid = ctx->gid;

	if (!fs->is_root)
		return 0;
	if (fstatat(dir->fd, "", &dst, AT_EMPTY_PATH) == 0 && (dst.st_mode & S_ISGID))
		gid = (gid_t)-1; /* the backing filesystem already gave the directory's group */
	if (fd >= 0)
		return fchown(fd, ctx->uid, gid) == 0 ? 0 : -errno;
	return fchownat(dir->fd, name, ctx->uid, gid, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
}

/*
 * The mode a new object gets. With FUSE_CAP_DONT_MASK the umask is ours to apply: like a
 * local filesystem, ignore it when the parent has a default ACL, which the backing
 * filesystem then applies (the daemon's own umask is 0).
 */
static mode_t creation_mode(fuse_req_t req, struct kinode *dir, mode_t mode)
{
	char proc[64];

	if (!fs_of(req)->dont_mask)
		return mode;
	proc_path(proc, dir->fd);
	if (getxattr(proc, "system.posix_acl_default", NULL, 0) > 0)
		return mode;
	return mode & ~fuse_req_ctx(req)->umask;
}

/* Creates a regular backing file with its header; returns an O_RDWR fd and its crypto state. */
int create_regular(fuse_req_t req, struct kinode *dir, const char *name, mode_t mode,
		   struct file_crypt *fc)
{
	struct kekfs_fs *fs = fs_of(req);
	int fd = openat(dir->fd, name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW,
			creation_mode(req, dir, mode) & 07777);
	int rc;

	if (fd < 0)
		return -errno;
	rc = set_owner(fs, req, dir, fd, name);
	if (rc == 0)
		rc = fileio_create(fd, &fs->vk, fc);
	if (rc != 0) {
		fileio_drop(fc);
		close(fd);
		unlinkat(dir->fd, name, 0);
		return rc;
	}
	return fd;
}

/* Removes a backing entry: a directory with its id file on encrypted-name volumes. */
static int backing_remove(struct kekfs_fs *fs, int dirfd, const char *name, int is_dir)
{
	if (is_dir && fs->nk)
		return namedir_rmdir(dirfd, name);
	return unlinkat(dirfd, name, is_dir ? AT_REMOVEDIR : 0) == 0 ? 0 : -errno;
}

/*
 * Finishes a create-type operation in a pinned directory: chown, then reply with the
 * entry's final attributes. An entry made (rc 0) that cannot be finished is removed again
 * (a backing filesystem that refuses chown, say): the caller gets the error and nothing is
 * left behind. Returns the result the caller got.
 */
static int reply_new_entry(fuse_req_t req, fuse_ino_t parent, const struct bname *b, int rc)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *dir = inode_of(req, parent);
	struct fuse_entry_param e;
	struct stat st;
	int made = rc == 0;

	if (rc == 0)
		rc = set_owner(fs, req, dir, -1, b->name);
	if (rc == 0)
		rc = -do_lookup_backing(fs, dir, b->name, &e);
	if (rc == 0) {
		fuse_reply_entry(req, &e);
		return 0;
	}
	if (made && fstatat(dir->fd, b->name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		backing_remove(fs, dir->fd, b->name, S_ISDIR(st.st_mode));
	fuse_reply_err(req, -rc);
	return rc;
}

/*
 * Starts making a new name in parent: pins the directory, works out the backing name and
 * writes a long name's side file before the entry exists. hidden_err: for refused names.
 */
int new_name_begin(fuse_req_t req, fuse_ino_t parent, const char *name, int hidden_err,
		   struct bname *b)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *dir = inode_of(req, parent);
	int rc = name_hidden(req, parent, name) ? hidden_err : pin(fs, dir);

	if (rc != 0)
		return rc;
	rc = backing_name(fs, dir, name, b);
	if (rc == 0)
		rc = namedir_long_write(dir->fd, b);
	if (rc != 0)
		unpin(fs, dir);
	return rc;
}

/* Ends it: a side file whose entry was not made goes again; unpins the directory. */
void new_name_end(struct kekfs_fs *fs, struct kinode *dir, const struct bname *b, int rc)
{
	if (rc != 0 && rc != -EEXIST)
		namedir_long_remove(dir->fd, b);
	unpin(fs, dir);
}

void kekfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *dir = inode_of(req, parent);
	struct file_crypt fc = {0};
	struct bname b;
	int rc = new_name_begin(req, parent, name, -EPERM, &b), fd;

	if (rc != 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (S_ISREG(mode)) { /* mknod(2) of a regular file: it still needs its header */
		fd = create_regular(req, dir, b.name, mode, &fc);
		fileio_drop(&fc);
		if (fd < 0)
			rc = fd;
		else
			close(fd);
	} else if (mknodat(dir->fd, b.name, creation_mode(req, dir, mode), rdev) != 0) {
		rc = -errno;
	}
	rc = reply_new_entry(req, parent, &b, rc);
	new_name_end(fs, dir, &b, rc);
}

void kekfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *dir = inode_of(req, parent);
	struct bname b;
	int rc = new_name_begin(req, parent, name, -EEXIST, &b);

	if (rc != 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	mode = creation_mode(req, dir, mode);
	if (fs->nk)
		rc = namedir_mkdir(dir->fd, b.name, mode);
	else if (mkdirat(dir->fd, b.name, mode) != 0)
		rc = -errno;
	rc = reply_new_entry(req, parent, &b, rc);
	new_name_end(fs, dir, &b, rc);
}

/* A target as the backing symlink holds it: sealed inline, or, longer than a backing symlink
 * takes, the reference to a new side object (format/linktarget.h). */
static int target_seal(struct kekfs_fs *fs, const char *target, char *enc, size_t size)
{
	if (strlen(target) <= SYMLINK_MAX_TARGET)
		return symlink_seal(fs->vol->name_key, fs->vol->id, target, enc, size);
	return linktarget_store(kekfs_fs_backing_fd(fs), fs->vol->name_key, fs->vol->id, target,
				enc);
}

void kekfs_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *dir = inode_of(req, parent);
	char enc[4096];
	struct bname b;
	int rc = new_name_begin(req, parent, name, -EEXIST, &b);

	if (rc != 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	enc[0] = '\0';
	rc = target_seal(fs, target, enc, sizeof(enc));
	if (rc == 0 && symlinkat(enc, dir->fd, b.name) != 0)
		rc = -errno;
	rc = reply_new_entry(req, parent, &b, rc);
	if (rc != 0 && linkref_is(enc)) /* the link is not there: nor may its side object be */
		linktarget_remove(kekfs_fs_backing_fd(fs), enc);
	new_name_end(fs, dir, &b, rc);
}

void kekfs_readlink(fuse_req_t req, fuse_ino_t ino_id)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = inode_of(req, ino_id);
	char enc[PATH_MAX + 1], target[PATH_MAX + 1];
	ssize_t n = pin(fs, ino);

	if (n == 0) {
		n = readlinkat(ino->fd, "", enc, sizeof(enc) - 1);
		if (n < 0)
			n = -errno;
		unpin(fs, ino);
	}
	if (n < 0) {
		fuse_reply_err(req, (int)-n);
		return;
	}
	enc[n] = '\0';
	n = linkref_is(enc) ? linktarget_load(kekfs_fs_backing_fd(fs), fs->vol->name_key,
					      fs->vol->id, enc, target, sizeof(target))
			    : symlink_open(fs->vol->name_key, fs->vol->id, enc, target, sizeof(target));
	if (n < 0) {
		log_file_error(fs, ino, "symlink target failed authentication");
		fuse_reply_err(req, EIO);
		return;
	}
	fuse_reply_readlink(req, target);
	secmem_wipe(target, sizeof(target));
}

void kekfs_link(fuse_req_t req, fuse_ino_t ino_id, fuse_ino_t parent, const char *name)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = inode_of(req, ino_id), *dir = inode_of(req, parent);
	struct fuse_entry_param e;
	struct bname b;
	char proc[64];
	int rc = new_name_begin(req, parent, name, -EEXIST, &b);

	if (rc == 0 && (rc = pin(fs, ino)) != 0)
		new_name_end(fs, dir, &b, rc);
	if (rc != 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	proc_path(proc, ino->fd);
	if (linkat(AT_FDCWD, proc, dir->fd, b.name, AT_SYMLINK_FOLLOW) != 0)
		rc = -errno;
	if (rc == 0)
		rc = -do_lookup_backing(fs, dir, b.name, &e);
	unpin(fs, ino);
	new_name_end(fs, dir, &b, rc);
	if (rc != 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &e);
}

/* The side object that removing the name bname (stat st, st_nlink 0 if unknown) frees: that
 * of a long symlink target, when this is the symlink's last name; "" if none. */
static void long_target_of(int dirfd, const char *bname, const struct stat *st,
			   char ref[LINKREF_LEN + 1])
{
	ssize_t n = st->st_nlink == 1 && S_ISLNK(st->st_mode) && st->st_size == LINKREF_LEN
			? readlinkat(dirfd, bname, ref, LINKREF_LEN + 1)
			: -1;

	ref[n == LINKREF_LEN ? n : 0] = '\0';
	if (!linkref_is(ref))
		ref[0] = '\0';
}

static void remove_entry(fuse_req_t req, fuse_ino_t parent, const char *name, int flags)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *dir = inode_of(req, parent);
	int rc = name_hidden(req, parent, name) ? EPERM : -pin(fs, dir);
	char ref[LINKREF_LEN + 1];
	struct bname b;
	struct stat st;

	if (!rc && (rc = -backing_name(fs, dir, name, &b)) != 0)
		unpin(fs, dir);
	if (!rc) {
		if (flags || fstatat(dir->fd, b.name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			st.st_nlink = 0; /* only a last name frees anything */
		long_target_of(dir->fd, b.name, &st, ref);
		rc = -backing_remove(fs, dir->fd, b.name, flags == AT_REMOVEDIR);
		if (!rc && st.st_nlink == 1)
			inode_table_unlinked(fs->inodes, st.st_dev, st.st_ino);
		if (!rc && ref[0])
			linktarget_remove(kekfs_fs_backing_fd(fs), ref);
		if (!rc)
			namedir_long_remove(dir->fd, &b);
		unpin(fs, dir);
	}
	fuse_reply_err(req, rc);
}

void kekfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_entry(req, parent, name, 0);
}

void kekfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_entry(req, parent, name, AT_REMOVEDIR);
}

/*
 * A directory renamed over an empty one: with encrypted names the victim still holds its id
 * file, which must go first (and come back if the rename fails). 1 if it went.
 */
static int rename_victim_prepare(struct kekfs_fs *fs, struct kinode *to, const char *dst,
				 const struct stat *src_st, const struct stat *victim,
				 unsigned flags, uint8_t saved[NAME_DIRID_LEN])
{
	if (!fs->nk || (flags & (RENAME_EXCHANGE | RENAME_NOREPLACE)) || victim->st_nlink == 0 ||
	    !S_ISDIR(victim->st_mode) || !S_ISDIR(src_st->st_mode) ||
	    (src_st->st_dev == victim->st_dev && src_st->st_ino == victim->st_ino))
		return 0;
	return namedir_victim_prepare(to->fd, dst, saved);
}

/* Renames with both directories pinned; only the moved entry's own name is re-encrypted. */
static int rename_pinned(struct kekfs_fs *fs, struct kinode *from, const char *name,
			 struct kinode *to, const char *newname, unsigned flags)
{
	int exchange = (flags & RENAME_EXCHANGE) != 0, rc, had_id = 0;
	struct stat victim = {.st_nlink = 0}, src_st;
	char ref[LINKREF_LEN + 1];
	uint8_t saved[NAME_DIRID_LEN];
	struct bname src, dst;

	rc = backing_name(fs, from, name, &src);
	if (rc == 0)
		rc = backing_name(fs, to, newname, &dst);
	if (rc == 0 && fstatat(from->fd, src.name, &src_st, AT_SYMLINK_NOFOLLOW) != 0)
		rc = -errno;
	if (rc == 0 && !exchange && fstatat(to->fd, dst.name, &victim, AT_SYMLINK_NOFOLLOW) != 0)
		victim.st_nlink = 0;
	if (rc == 0 && !exchange)
		rc = namedir_long_write(to->fd, &dst);
	if (rc != 0)
		return rc;
	long_target_of(to->fd, dst.name, &victim, ref);
	had_id = rename_victim_prepare(fs, to, dst.name, &src_st, &victim, flags, saved);
	if (had_id < 0)
		rc = had_id;
	else if (renameat2(from->fd, src.name, to->fd, dst.name, flags) != 0)
		rc = -errno;
	if (rc != 0 && had_id > 0)
		namedir_victim_restore(to->fd, dst.name, saved);
	if (rc != 0 && !exchange && victim.st_nlink == 0)
		namedir_long_remove(to->fd, &dst);
	if (rc != 0 || exchange)
		return rc;
	if (!(src_st.st_dev == victim.st_dev && src_st.st_ino == victim.st_ino))
		namedir_long_remove(from->fd, &src); /* else the rename did nothing */
	if (src_st.st_dev == victim.st_dev && src_st.st_ino == victim.st_ino)
		return 0;
	if (victim.st_nlink == 1 && !S_ISDIR(victim.st_mode))
		inode_table_unlinked(fs->inodes, victim.st_dev, victim.st_ino);
	if (ref[0])
		linktarget_remove(kekfs_fs_backing_fd(fs), ref);
	return 0;
}

void kekfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		  const char *newname, unsigned int flags)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *from = inode_of(req, parent), *to = inode_of(req, newparent);
	int rc = 0;

	if (name_hidden(req, parent, name) || name_hidden(req, newparent, newname))
		rc = EPERM;
	else if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		rc = EINVAL;
	else if ((rc = -pin2(fs, from, to)) == 0) {
		rc = -rename_pinned(fs, from, name, to, newname, flags);
		unpin2(fs, from, to);
	}
	fuse_reply_err(req, rc);
}
