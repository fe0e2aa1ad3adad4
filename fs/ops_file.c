/* FUSE ops of open files: open, create, read, write, flush, fsync, release, fallocate, lseek. */
#include "fs_priv.h"

/* ---- open files ---- */

/* Whether two stats of a backing file show the same contents: a change made outside the
 * mount always moves ctime (which no one can set) or the size. */
static int same_backing(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/*
 * Keeps the kernel's page cache across opens when the backing file is as it was when the
 * last handle let go of it: writes through the mount update the cache themselves, so only
 * a change behind the mount (another process on the backing directory, a restored backup)
 * must drop it. Caller holds the inode lock exclusively.
 */
static void cache_check_open(struct kinode *ino, int fd, struct fuse_file_info *fi)
{
	struct stat st;

	if (fstat(fd, &st) != 0) {
		ino->cached_valid = 0;
		return;
	}
	fi->keep_cache = ino->cached_valid && same_backing(&ino->cached, &st);
	ino->cached = st;
	ino->cached_valid = 1;
}

/* Remembers the backing file as the page cache now knows it (our writes are in it), unless
 * the handle wrote around the cache: then the next open starts with an empty one. */
static void cache_note_release(struct kinode *ino, const struct khandle *h)
{
	pthread_rwlock_wrlock(&ino->lock);
	ino->cached_valid = !atomic_load(&h->wrote_around) && fstat(h->fd, &ino->cached) == 0;
	pthread_rwlock_unlock(&ino->lock);
}

/*
 * A write that did not come from the page cache (O_DIRECT, or the write-through of a
 * setuid file) changed bytes the cache may hold for other handles: the kernel invalidates
 * them after a synchronous O_DIRECT write but not when an AIO one completes, so a buffered
 * read racing it kept the old bytes (issue 19). Dropped here before the reply; with no other
 * handle open there is nothing to drop, and the release drops the rest.
 */
static void write_around_cache(struct kekfs_fs *fs, struct kinode *ino, struct khandle *h,
			       uint64_t off, size_t n)
{
	int others;

	atomic_store(&h->wrote_around, 1);
	pthread_rwlock_rdlock(&ino->lock);
	others = ino->opens > 1;
	pthread_rwlock_unlock(&ino->lock);
	if (others && fs->se)
		fuse_lowlevel_notify_inval_inode(fs->se, h->ino, (off_t)off, (off_t)n);
}

/* Attaches an open backing fd to a FUSE handle; honours O_TRUNC. Takes ownership of fd. */
static int handle_open(fuse_req_t req, struct kinode *ino, int fd, struct fuse_file_info *fi)
{
	struct kekfs_fs *fs = fs_of(req);
	struct khandle *h = malloc(sizeof(*h));
	int rc = 0;

	if (!h) {
		close(fd);
		return -ENOMEM;
	}
	pthread_rwlock_wrlock(&ino->lock);
	if ((fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY)
		rc = fileio_truncate(fd, &fs->vk, &ino->fc, 0);
	if (rc == 0 && (fi->flags & O_TRUNC))
		suidgid_kill(req, fd, req_kill_suidgid);
	cache_check_open(ino, fd, fi);
	pthread_rwlock_unlock(&ino->lock);
	if (rc != 0) {
		crypt_release(ino);
		close(fd);
		free(h);
		return rc;
	}
	h->fd = fd;
	h->direct = (fi->flags & O_DIRECT) != 0;
	atomic_init(&h->wrote_around, 0);
	/* With the writeback cache the kernel appends itself and sends the right offsets. */
	h->append = !fs->writeback && (fi->flags & O_APPEND) != 0;
	write_mode_choose(fs, h, ino, fi);
	handle_track(fs, &h->link, 0);
	fi->fh = (uintptr_t)h;
	return 0;
}

void kekfs_open(fuse_req_t req, fuse_ino_t ino_id, struct fuse_file_info *fi)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = inode_of(req, ino_id);
	int fd = pin(fs, ino), rc;

	if (fd == 0) {
		fd = backing_open(ino, fi->flags);
		unpin(fs, ino);
	}
	rc = fd < 0 ? fd : crypt_acquire(fs, ino, fd);
	if (rc == 0)
		rc = handle_open(req, ino, fd, fi);
	else if (fd >= 0)
		close(fd);
	if (rc != 0)
		fuse_reply_err(req, errno_for_kernel(rc));
	else
		fuse_reply_open(req, fi);
}

void kekfs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  struct fuse_file_info *fi)
{
	struct kekfs_fs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct file_crypt fc = {0};
	struct kinode *ino, *dir = inode_of(req, parent);
	struct bname b;
	int fd = new_name_begin(req, parent, name, -EPERM, &b), err = 0;

	if (fd == 0) {
		fd = create_regular(req, dir, b.name, mode, &fc);
		if (fd >= 0 && (err = do_lookup_backing(fs, dir, b.name, &e)) != 0) {
			fileio_drop(&fc);
			close(fd);
			unlinkat(dir->fd, b.name, 0); /* the caller gets the error: leave nothing */
			fd = -err;
		}
		new_name_end(fs, dir, &b, fd < 0 ? fd : 0);
	}
	if (fd < 0) {
		fuse_reply_err(req, -fd);
		return;
	}
	ino = (struct kinode *)(uintptr_t)e.ino;
	pthread_rwlock_wrlock(&ino->lock);
	if (ino->opens == 0) {
		fileio_drop(&ino->fc);
		ino->fc = fc;
	} else {
		fileio_drop(&fc); /* cannot happen for a new file; never drop a DEK in use */
	}
	ino->opens++;
	pthread_rwlock_unlock(&ino->lock);
	fi->flags &= ~O_TRUNC;
	err = -handle_open(req, ino, fd, fi);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_create(req, &e, fi);
}

void kekfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct khandle *h = handle_of(fi);

	handle_untrack(fs_of(req), &h->link);
	cache_note_release(inode_of(req, ino), h);
	close(h->fd);
	crypt_release(inode_of(req, ino));
	free(h);
	fuse_reply_err(req, 0);
}

/*
 * Nothing to do at close (writes are on the backing file when replied to), but the handler
 * must exist: without one (ENOSYS once, no_flush) close(2) returned before the kernel's
 * cached pages reached us, and a daemon killed then lost data the writer had closed (found
 * by test_crash's kill -9 rounds).
 */
void kekfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

void kekfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	int fd = handle_of(fi)->fd;
	int rc = datasync ? fdatasync(fd) : fsync(fd);

	(void)ino;
	fuse_reply_err(req, rc == 0 ? 0 : errno);
}

/* Holds the chunks a request of n bytes at off touches (the inode lock is held shared). */
static void chunks_acquire(struct kekfs_fs *fs, struct kinode *ino, struct range_hold *hold,
			   uint64_t off, size_t n, int write)
{
	uint64_t size = fs->vk.geom.size;

	range_lock_acquire(&ino->chunks, hold, off / size, (off + (n ? n : 1) - 1) / size, write);
}

/*
 * A write that ends inside the file changes only the chunks it covers, so it holds the inode
 * lock shared and just those chunks: reads and writes of other chunks go on meanwhile.
 * Returns 0, leaving *n alone, for a write that would change the size: that one is done
 * under the inode lock held exclusively.
 */
static int write_in_place(fuse_req_t req, struct kinode *ino, int fd, const char *buf,
			  size_t size, uint64_t at, ssize_t *n)
{
	struct kekfs_fs *fs = fs_of(req);
	struct range_hold hold;

	pthread_rwlock_rdlock(&ino->lock);
	chunks_acquire(fs, ino, &hold, at, size, 1);
	*n = fileio_write_inside(fd, &fs->vk, &ino->fc, buf, size, at);
	if (*n > 0)
		suidgid_kill(req, fd, req_kill_suidgid);
	range_lock_release(&ino->chunks, &hold);
	pthread_rwlock_unlock(&ino->lock);
	return *n != 0;
}

void kekfs_read(fuse_req_t req, fuse_ino_t ino_id, size_t size, off_t off,
		struct fuse_file_info *fi)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = inode_of(req, ino_id);
	char *buf = malloc(size ? size : 1);
	struct range_hold hold;
	ssize_t n;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_rwlock_rdlock(&ino->lock);
	chunks_acquire(fs, ino, &hold, (uint64_t)off, size, 0);
	n = fileio_read(handle_of(fi)->fd, &fs->vk, &ino->fc, buf, size, (uint64_t)off);
	range_lock_release(&ino->chunks, &hold);
	pthread_rwlock_unlock(&ino->lock);
	if (n < 0) {
		log_crypt_error(fs, ino, (int)n);
		fuse_reply_err(req, errno_for_kernel((int)n));
	} else {
		fuse_reply_buf(req, buf, (size_t)n);
	}
	secmem_wipe(buf, size);
	free(buf);
}

void kekfs_write(fuse_req_t req, fuse_ino_t ino_id, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = inode_of(req, ino_id);
	struct khandle *h = handle_of(fi);
	uint64_t at = (uint64_t)off;
	ssize_t n = 0;

	if (h->append || !write_in_place(req, ino, h->fd, buf, size, at, &n)) {
		pthread_rwlock_wrlock(&ino->lock);
		n = h->append ? fileio_size(h->fd, &fs->vk.geom, &at) : 0;
		if (n == 0 && atomic_load(&fs->space.low)) /* a full disk fails it cleanly */
			n = fileio_reserve(h->fd, &fs->vk.geom, at + size);
		if (n == 0)
			n = fileio_write(h->fd, &fs->vk, &ino->fc, buf, size, at);
		if (n > 0)
			suidgid_kill(req, h->fd, req_kill_suidgid);
		pthread_rwlock_unlock(&ino->lock);
	}
	if (n > 0 && !fi->writepage && (h->direct || fs->writeback))
		write_around_cache(fs, ino, h, at, (size_t)n);
	if (n < 0) {
		if (n != -ENOSPC && n != -EDQUOT && n != -EFBIG)
			log_crypt_error(fs, ino, (int)n);
		fuse_reply_err(req, errno_for_kernel((int)n));
	} else {
		fuse_reply_write(req, (size_t)n);
	}
	/* After the reply: the free-space check is off the request's latency. */
	if (n < 0 ? (n == -ENOSPC || n == -EDQUOT) && spacewatch_full(&fs->space)
		  : spacewatch_wrote(&fs->space, (uint64_t)n))
		cached_writers_turn_away(fs);
}

/* Reserves the backing space plaintext [from, end) takes, so that writes there cannot run out
 * of it, then grows the file to end unless keep. Inode lock held exclusively. */
static int reserve_range(struct kekfs_fs *fs, struct kinode *ino, int fd, uint64_t from,
			 uint64_t end, int keep, uint64_t cur)
{
	const struct chunk_geom *g = &fs->vk.geom;
	uint64_t start = geom_chunk_off(g, from / g->size);

	if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)start,
		      (off_t)(geom_backing_size(g, end) - start)) != 0)
		return -errno;
	return !keep && end > cur ? fileio_truncate(fd, &fs->vk, &ino->fc, end) : 0;
}

/*
 * Modes 0 and KEEP_SIZE reserve; PUNCH_HOLE (always with KEEP_SIZE) and ZERO_RANGE make the
 * range read as zeros (volume/holes.h), ZERO_RANGE keeping it allocated and growing the file
 * past its end unless KEEP_SIZE. The kernel refuses COLLAPSE_RANGE and INSERT_RANGE for FUSE
 * itself (docs/DECISIONS.md); the page cache over the range is its to drop.
 */
void kekfs_fallocate(fuse_req_t req, fuse_ino_t ino_id, int mode, off_t off, off_t len,
		     struct fuse_file_info *fi)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = inode_of(req, ino_id);
	struct khandle *h = handle_of(fi);
	uint64_t cur, end = (uint64_t)off + (uint64_t)len;
	int keep = mode & FALLOC_FL_KEEP_SIZE, punch = mode & FALLOC_FL_PUNCH_HOLE;
	int zero = mode & FALLOC_FL_ZERO_RANGE, rc;

	if ((mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) ||
	    (punch && zero)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	pthread_rwlock_wrlock(&ino->lock);
	rc = fileio_size(h->fd, &fs->vk.geom, &cur);
	if (rc == 0 && (punch || zero))
		rc = holes_zero(h->fd, &fs->vk, &ino->fc, (uint64_t)off, (uint64_t)len, zero);
	if (rc == 0 && !punch && (!zero || end > cur))
		rc = reserve_range(fs, ino, h->fd, zero && (uint64_t)off < cur ? cur : (uint64_t)off,
				   end, keep, cur);
	/* FUSE_FALLOCATE carries no kill flag: as a local filesystem does for callers without
	 * CAP_FSETID, a fallocate by anyone but root clears setuid/setgid. */
	if (rc == 0)
		suidgid_kill(req, h->fd, fuse_req_ctx(req)->uid != 0);
	pthread_rwlock_unlock(&ino->lock);
	fuse_reply_err(req, errno_for_kernel(rc));
}

/*
 * SEEK_DATA and SEEK_HOLE from the backing file's holes. A handle writing through the kernel's
 * writeback cache may hold data and a size the backing file does not have yet, and a hole
 * reported there would make cp --sparse or tar -S skip what was written: the kernel is first
 * made to write its dirty pages back (invalidating them does; other threads serve those
 * writes, so nothing of the inode is held meanwhile).
 */
void kekfs_lseek(fuse_req_t req, fuse_ino_t ino_id, off_t off, int whence,
		 struct fuse_file_info *fi)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = inode_of(req, ino_id);
	uint64_t size, at = 0;
	int rc;

	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (fs->se && cached_writer_open(fs, ino_id))
		fuse_lowlevel_notify_inval_inode(fs->se, ino_id, 0, 0);
	pthread_rwlock_rdlock(&ino->lock);
	rc = off < 0 ? -ENXIO : fileio_size(handle_of(fi)->fd, &fs->vk.geom, &size);
	if (rc == 0)
		rc = holes_seek(handle_of(fi)->fd, &fs->vk.geom, size, (uint64_t)off, whence, &at);
	pthread_rwlock_unlock(&ino->lock);
	if (rc != 0)
		fuse_reply_err(req, errno_for_kernel(rc));
	else
		fuse_reply_lseek(req, (off_t)at);
}
