/* FUSE ops: lookup, forget, getattr and setattr. */
#include "fs_priv.h"

/* ---- lookup and attributes ---- */

/* The inode of an O_PATH fd of a backing object (taken): a new lookup of it, in e. Positive
 * errno. */
static int lookup_fd(struct kekfs_fs *fs, int fd, struct fuse_entry_param *e)
{
	struct kinode *ino;
	struct stat st;

	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
		int err = errno;
		close(fd);
		return err;
	}
	e->attr = st;
	attr_from_backing(fs, fd, &e->attr); /* fd is the table's once it has the inode */
	ino = inode_table_get(fs->inodes, fd, &st);
	if (!ino)
		return ENOMEM;
	e->ino = (uintptr_t)ino;
	e->generation = ino->generation;
	e->attr_timeout = ATTR_TIMEOUT;
	e->entry_timeout = ATTR_TIMEOUT;
	return 0;
}

/* Looks up a backing entry of dir (pinning it): a new lookup of its inode, in e. */
int do_lookup_backing(struct kekfs_fs *fs, struct kinode *dir, const char *bname,
		      struct fuse_entry_param *e)
{
	int fd;

	memset(e, 0, sizeof(*e));
	fd = pin(fs, dir);
	if (fd < 0)
		return -fd;
	fd = openat(dir->fd, bname, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		fd = -errno;
	unpin(fs, dir);
	return fd < 0 ? -fd : lookup_fd(fs, fd, e);
}

/* Looks up a plaintext name: positive errno, ENOENT for a name that is not there. */
static int do_lookup(fuse_req_t req, fuse_ino_t parent, const char *name,
		     struct fuse_entry_param *e)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *dir = inode_of(req, parent);
	struct bname b;
	int rc;

	memset(e, 0, sizeof(*e));
	if (name_hidden(req, parent, name))
		return ENOENT;
	rc = pin(fs, dir);
	if (rc != 0)
		return -rc;
	rc = backing_name(fs, dir, name, &b);
	if (rc == 0)
		rc = -do_lookup_backing(fs, dir, b.name, e);
	unpin(fs, dir);
	return -rc;
}

/*
 * "." of a node id the kernel may have forgotten: it asks when open_by_handle_at or an NFS
 * server decodes a file handle (FUSE_CAP_EXPORT_SUPPORT). Positive errno; ESTALE when the
 * table no longer has it or its object is gone.
 */
static int lookup_self(fuse_req_t req, fuse_ino_t id, struct fuse_entry_param *e)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = id == FUSE_ROOT_ID ? NULL : inode_table_get_by_id(fs->inodes, id);
	int rc;

	if (!ino)
		return ESTALE;
	rc = pin(fs, ino);
	if (rc == 0) {
		rc = inode_stat(fs, ino, &e->attr);
		unpin(fs, ino);
	}
	if (rc != 0) {
		inode_table_forget(fs->inodes, ino, 1);
		return ESTALE;
	}
	e->ino = id;
	e->generation = ino->generation;
	e->attr_timeout = e->entry_timeout = ATTR_TIMEOUT;
	return 0;
}

/* Whether backing directory fd lies beneath the volume's root: its ".." chain meets the root
 * (a directory moved out of the backing directory must not be handed out). */
static int beneath_root(struct kekfs_fs *fs, int fd)
{
	struct kinode *root = inode_table_root(fs->inodes);
	struct stat st, up;
	int cur = dup(fd), ok = 0;

	for (int depth = 0; cur >= 0 && depth < PATH_MAX / 2 && fstat(cur, &st) == 0; depth++) {
		int next;

		if (st.st_dev == root->dev && st.st_ino == root->ino) {
			ok = 1;
			break;
		}
		next = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
		close(cur);
		cur = next;
		if (cur >= 0 && fstat(cur, &up) == 0 && up.st_dev == st.st_dev && up.st_ino == st.st_ino)
			break; /* the file system's root, and the volume's was not on the way */
	}
	if (cur >= 0)
		close(cur);
	return ok;
}

/* ".." of a directory: the kernel asks to connect a decoded directory handle to the tree. */
static int lookup_parent(fuse_req_t req, fuse_ino_t id, struct fuse_entry_param *e)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *dir = inode_of(req, id), *root = inode_table_root(fs->inodes);
	int rc = id == FUSE_ROOT_ID ? -ENOENT : pin(fs, dir), fd;
	struct stat st;

	if (rc != 0)
		return -rc;
	fd = openat(dir->fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
	unpin(fs, dir);
	if (fd < 0 || fstat(fd, &st) != 0 || !beneath_root(fs, fd)) {
		if (fd >= 0)
			close(fd);
		return ESTALE;
	}
	if (st.st_dev == root->dev && st.st_ino == root->ino) {
		close(fd);
		e->ino = FUSE_ROOT_ID;
		return inode_stat(fs, root, &e->attr) == 0 ? 0 : ESTALE;
	}
	return lookup_fd(fs, fd, e);
}

void kekfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	int err = strcmp(name, ".") == 0    ? (memset(&e, 0, sizeof(e)), lookup_self(req, parent, &e))
		  : strcmp(name, "..") == 0 ? (memset(&e, 0, sizeof(e)), lookup_parent(req, parent, &e))
					    : do_lookup(req, parent, name, &e);

	if (err == ENOENT) {
		e.ino = 0; /* cache the negative entry */
		e.entry_timeout = ATTR_TIMEOUT;
		fuse_reply_entry(req, &e);
	} else if (err) {
		fuse_reply_err(req, err);
	} else {
		fuse_reply_entry(req, &e);
	}
}

void kekfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	inode_table_forget(fs_of(req)->inodes, inode_of(req, ino), nlookup);
	fuse_reply_none(req);
}

void kekfs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		inode_table_forget(fs_of(req)->inodes, inode_of(req, forgets[i].ino),
				   forgets[i].nlookup);
	fuse_reply_none(req);
}

/*
 * ---- a full disk ----
 * With the writeback cache, write(2) only fills the kernel's page cache and the WRITE comes
 * later, so ENOSPC would reach only fsync or close, and the kernel would keep a size that was
 * never stored. While the backing file system has less room than the kernel may hold dirty
 * for the mount (fs/spacewatch.h), opens for writing therefore get direct I/O (each write(2)
 * is a WRITE and gets its error), and the cached writers opened before are turned away: the
 * kernel asks GETATTR before a cached write(2) when the attributes are invalid, and the
 * reply's error fails that write(2) before anything is cached.
 */

/* The disk just got low: each cached writer's next write(2) asks GETATTR first, to be refused.
 * Only attributes are invalidated (offset -1): no page is touched, so no reply is awaited. */
void cached_writers_turn_away(struct kekfs_fs *fs)
{
	struct open_handle *h;

	if (!fs->se)
		return;
	pthread_mutex_lock(&fs->handles_lock);
	for (h = fs->handles.next; h != &fs->handles; h = h->next)
		if (!h->is_dir && ((struct khandle *)h)->cached_writer)
			fuse_lowlevel_notify_inval_inode(fs->se, ((struct khandle *)h)->ino, -1, 0);
	pthread_mutex_unlock(&fs->handles_lock);
}

/* Whether a handle of ino writes through the kernel's writeback cache (fs/ops_file.c lseek). */
int cached_writer_open(struct kekfs_fs *fs, fuse_ino_t ino)
{
	struct open_handle *h;
	int found = 0;

	pthread_mutex_lock(&fs->handles_lock);
	for (h = fs->handles.next; h != &fs->handles && !found; h = h->next)
		found = !h->is_dir && ((struct khandle *)h)->ino == ino &&
			((struct khandle *)h)->cached_writer;
	pthread_mutex_unlock(&fs->handles_lock);
	return found;
}

/* Whether a GETATTR on handle h is a cached write(2) to fail with ENOSPC. An O_WRONLY handle
 * asks only to write or to seek to the end; an O_RDWR one may be reading, so it is refused
 * once per low spell, which stops writers that stop at an error (dd, cp, rsync, tar). */
static int cached_write_refused(struct kekfs_fs *fs, struct khandle *h)
{
	int turned, low;

	if (!h->cached_writer)
		return 0;
	low = spacewatch_low(&fs->space, &turned);
	if (turned)
		cached_writers_turn_away(fs);
	if (!low) {
		atomic_store(&h->refused, 0);
		return 0;
	}
	return !atomic_exchange(&h->refused, 1) || h->write_only;
}

/* Opens for writing are direct I/O while the disk is low, so that write(2) sees ENOSPC. */
void write_mode_choose(struct kekfs_fs *fs, struct khandle *h, struct kinode *ino,
		       struct fuse_file_info *fi)
{
	int turned = 0;

	h->ino = (fuse_ino_t)(uintptr_t)ino;
	h->cached_writer = 0;
	h->write_only = (fi->flags & O_ACCMODE) == O_WRONLY;
	atomic_init(&h->refused, 0);
	if (!fs->writeback || (fi->flags & O_ACCMODE) == O_RDONLY)
		return;
	if (spacewatch_low(&fs->space, &turned))
		fi->direct_io = 1;
	else
		h->cached_writer = 1;
	if (turned)
		cached_writers_turn_away(fs);
}

static void attr_reply(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *node = inode_of(req, ino);
	struct stat st;
	int rc;

	if (fi) { /* fstat of an open file: works after its last name is gone */
		rc = fstat(handle_of(fi)->fd, &st) == 0 ? 0 : -errno;
		if (rc == 0)
			attr_from_backing(fs, handle_of(fi)->fd, &st);
	} else if ((rc = pin(fs, node)) == 0) {
		rc = inode_stat(fs, node, &st);
		unpin(fs, node);
	}
	if (rc != 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

/* A GETATTR with a handle comes from read(2), write(2) or lseek(2), never from stat(2). */
void kekfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (fi && cached_write_refused(fs_of(req), handle_of(fi)))
		fuse_reply_err(req, ENOSPC);
	else
		attr_reply(req, ino, fi);
}

/* Truncates a regular file, through the handle's fd if there is one. */
static int inode_truncate(struct kekfs_fs *fs, struct kinode *ino, struct fuse_file_info *fi,
			  off_t size)
{
	int fd = fi ? ((struct khandle *)(uintptr_t)fi->fh)->fd : backing_open(ino, O_RDWR);
	int rc;

	if (fd < 0)
		return fd;
	rc = crypt_acquire(fs, ino, fd);
	if (rc == 0) {
		pthread_rwlock_wrlock(&ino->lock);
		rc = fileio_truncate(fd, &fs->vk, &ino->fc, (uint64_t)size);
		pthread_rwlock_unlock(&ino->lock);
		if (rc != 0)
			log_crypt_error(fs, ino, rc);
		crypt_release(ino);
	}
	if (!fi)
		close(fd);
	return rc;
}

static int inode_set_times(struct kinode *ino, struct stat *attr, int valid)
{
	struct timespec tv[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};
	char proc[64];
	int rc;

	if (valid & FUSE_SET_ATTR_ATIME_NOW)
		tv[0].tv_nsec = UTIME_NOW;
	else if (valid & FUSE_SET_ATTR_ATIME)
		tv[0] = attr->st_atim;
	if (valid & FUSE_SET_ATTR_MTIME_NOW)
		tv[1].tv_nsec = UTIME_NOW;
	else if (valid & FUSE_SET_ATTR_MTIME)
		tv[1] = attr->st_mtim;
	if (S_ISLNK(ino->type))
		return utimensat(ino->fd, "", tv, AT_EMPTY_PATH) == 0 ? 0 : -errno;
	proc_path(proc, ino->fd);
	/* A re-wrap puts a file's old times back under the inode lock: never over these. */
	pthread_rwlock_rdlock(&ino->lock);
	rc = utimensat(AT_FDCWD, proc, tv, 0) == 0 ? 0 : -errno;
	pthread_rwlock_unlock(&ino->lock);
	return rc;
}

void kekfs_setattr(fuse_req_t req, fuse_ino_t ino_id, struct stat *attr, int valid,
		   struct fuse_file_info *fi)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = inode_of(req, ino_id);
	char proc[64];
	int rc = pin(fs, ino);

	if (rc != 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	proc_path(proc, ino->fd);
	if ((valid & FUSE_SET_ATTR_MODE) && !S_ISLNK(ino->type) &&
	    chmod(proc, attr->st_mode & 07777) != 0)
		rc = -errno;
	if (rc == 0 && (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
		uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;

		if (fchownat(ino->fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
			rc = -errno;
	}
	if (rc == 0 && (valid & FUSE_SET_ATTR_SIZE))
		rc = S_ISREG(ino->type) ? inode_truncate(fs, ino, fi, attr->st_size) : -EINVAL;
	if (rc == 0 && (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
				 FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW)))
		rc = inode_set_times(ino, attr, valid);
	if (rc == 0 && S_ISREG(ino->type))
		suidgid_kill(req, ino->fd, req_kill_suidgid);
	unpin(fs, ino);
	if (rc == 0)
		attr_reply(req, ino_id, fi);
	else
		fuse_reply_err(req, errno_for_kernel(rc));
}
