/*
 * FUSE copy_file_range between two files of the volume, done in the daemon: each slice is
 * read from the source's chunks and sealed under the destination's DEK and file id, so a
 * copy is one request instead of a READ and a WRITE round trip per 128 KiB.
 */
#include "fs_priv.h"

#define COPY_SLICE (1u << 20)	   /* plaintext held (and locked) at a time */
#define COPY_MAX (1024u * COPY_SLICE) /* per request: the reply's count is 32 bits */

/*
 * Locks a pair for one slice: the destination exclusively (its size may change), the source
 * shared with the chunks read held against in-place writers, in address order so that two
 * copies in opposite directions never deadlock. One file copied into itself: locked once.
 */
static void pair_lock(struct kekfs_fs *fs, struct kinode *src, struct kinode *dst,
		      struct range_hold *hold, uint64_t off, size_t n)
{
	uint64_t size = fs->vk.geom.size;

	if (src == dst) {
		pthread_rwlock_wrlock(&dst->lock);
		return;
	}
	if (src < dst)
		pthread_rwlock_rdlock(&src->lock);
	pthread_rwlock_wrlock(&dst->lock);
	if (src > dst)
		pthread_rwlock_rdlock(&src->lock);
	range_lock_acquire(&src->chunks, hold, off / size, (off + n - 1) / size, 0);
}

static void pair_unlock(struct kinode *src, struct kinode *dst, struct range_hold *hold)
{
	if (src != dst) {
		range_lock_release(&src->chunks, hold);
		pthread_rwlock_unlock(&src->lock);
	}
	pthread_rwlock_unlock(&dst->lock);
}

/* One slice: bytes copied (0 at the source's end), or -errno. */
static ssize_t copy_slice(struct kekfs_fs *fs, struct kinode *src, int sfd, struct kinode *dst,
			  int dfd, char *buf, size_t n, uint64_t off_in, uint64_t off_out)
{
	struct range_hold hold;
	ssize_t got;

	pair_lock(fs, src, dst, &hold, off_in, n);
	got = fileio_read(sfd, &fs->vk, &src->fc, buf, n, off_in);
	if (got > 0 && atomic_load(&fs->space.low)) { /* a full disk fails it cleanly */
		int rc = fileio_reserve(dfd, &fs->vk.geom, off_out + (uint64_t)got);

		got = rc < 0 ? rc : got;
	}
	if (got > 0)
		got = fileio_write(dfd, &fs->vk, &dst->fc, buf, (size_t)got, off_out);
	pair_unlock(src, dst, &hold);
	return got;
}

void kekfs_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			   struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			   struct fuse_file_info *fi_out, size_t len, int flags)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *src = inode_of(req, ino_in), *dst = inode_of(req, ino_out);
	size_t want = len < COPY_MAX ? len : COPY_MAX, done = 0;
	char *buf = flags ? NULL : malloc(want < COPY_SLICE ? want : COPY_SLICE);
	ssize_t n = flags ? -EINVAL : buf ? 1 : -ENOMEM;

	while (n > 0 && done < want) {
		size_t slice = want - done < COPY_SLICE ? want - done : COPY_SLICE;

		n = copy_slice(fs, src, handle_of(fi_in)->fd, dst, handle_of(fi_out)->fd, buf,
			       slice, (uint64_t)off_in + done, (uint64_t)off_out + done);
		done += n > 0 ? (size_t)n : 0;
	}
	if (buf) {
		secmem_wipe(buf, want < COPY_SLICE ? want : COPY_SLICE);
		free(buf);
	}
	if (done == 0 && n < 0) {
		if (n != -ENOSPC && n != -EDQUOT && n != -EFBIG)
			log_crypt_error(fs, n == -EBADMSG ? src : dst, (int)n);
		fuse_reply_err(req, errno_for_kernel((int)n));
	} else {
		fuse_reply_write(req, done);
	}
	if (n < 0 ? (n == -ENOSPC || n == -EDQUOT) && spacewatch_full(&fs->space)
		  : spacewatch_wrote(&fs->space, done))
		cached_writers_turn_away(fs);
}
