/*
 * FUSE low-level operations. Modelled on libfuse's passthrough_ll.c: every inode the kernel
 * knows holds an O_PATH fd of its backing object, so all work is relative to directory fds
 * (*at() calls) and renames or long paths need no path rebuilding. Regular files add an
 * encryption state (header, DEK, lock) shared by all handles of the inode.
 */
#include "fuse_ops.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <linux/fuse.h>

#include "../crypto/secmem.h"
#include "fileio.h"
#include "inode_table.h"
#include "log.h"
#include "namedir.h"
#include "objcrypt.h"
#include "spacewatch.h"

#define ATTR_TIMEOUT 1.0
#define MAX_IO (1u << 20)

/* Every open file and directory handle is listed, so an unmount with releases still in
 * flight does not leak them. */
struct open_handle {
	struct open_handle *prev, *next;
	int is_dir;
};

struct khandle {
	struct open_handle link; /* first member */
	int fd;
	int append;
	fuse_ino_t ino;
	int cached_writer; /* open for writing through the kernel's writeback cache */
	int write_only;
	_Atomic int refused; /* an O_RDWR cached writer is refused once per low-space spell */
};

struct kdir {
	struct open_handle link; /* first member */
	DIR *dp;
	off_t offset;
	struct dirent *entry;
	uint8_t dir_id[NAME_DIRID_LEN]; /* encrypted names only */
	int warned;			/* one log line per directory for names that fail */
};

struct kekfs_fs {
	struct inode_table *inodes;
	struct volume *vol;
	struct keyring *kr;
	struct volume_keys vk;
	struct name_keys *nk; /* NULL on plaintext-name volumes */
	int is_root;
	int dont_mask; /* the kernel leaves the umask to us (FUSE_CAP_DONT_MASK) */
	int writeback; /* the kernel caches writes and owns sizes (FUSE_CAP_WRITEBACK_CACHE) */
	int posix_acl; /* the kernel enforces and caches ACLs (FUSE_CAP_POSIX_ACL) */
	_Atomic uint64_t init_unique; /* the INIT request until replied to (KILLPRIV_V2 below) */
	int killpriv_offered;	      /* the kernel offered FUSE_HANDLE_KILLPRIV_V2 */
	struct fuse_session *se;      /* for cache invalidation after a shred; NULL before mount */
	struct spacewatch space;      /* the backing file system's free space (a full disk) */
	pthread_mutex_t handles_lock;
	struct open_handle handles; /* list head */
};

static struct kekfs_fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct kinode *inode_of(fuse_req_t req, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? inode_table_root(fs_of(req)->inodes)
				   : (struct kinode *)(uintptr_t)ino;
}

static void handle_track(struct kekfs_fs *fs, struct open_handle *h, int is_dir)
{
	h->is_dir = is_dir;
	pthread_mutex_lock(&fs->handles_lock);
	h->next = fs->handles.next;
	h->prev = &fs->handles;
	fs->handles.next->prev = h;
	fs->handles.next = h;
	pthread_mutex_unlock(&fs->handles_lock);
}

static void handle_untrack(struct kekfs_fs *fs, struct open_handle *h)
{
	pthread_mutex_lock(&fs->handles_lock);
	h->prev->next = h->next;
	h->next->prev = h->prev;
	pthread_mutex_unlock(&fs->handles_lock);
}

static struct khandle *handle_of(struct fuse_file_info *fi)
{
	return (struct khandle *)(uintptr_t)fi->fh;
}

static void proc_path(char buf[64], int fd)
{
	snprintf(buf, 64, "/proc/self/fd/%d", fd);
}

/* Plaintext names the mount refuses: .kekfs at the root, when names are stored as given. */
static int name_hidden(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	return !fs_of(req)->nk && parent == FUSE_ROOT_ID && strcmp(name, VOLUME_DIR) == 0;
}

/* Backing entries the mount never shows: .kekfs, and with encrypted names every dot name
 * (directory ids, long-name side files, directories being made). */
static int backing_hidden(struct kekfs_fs *fs, fuse_ino_t parent, const char *bname)
{
	if (fs->nk)
		return name_is_internal(bname);
	return parent == FUSE_ROOT_ID && strcmp(bname, VOLUME_DIR) == 0;
}

/* Backing path of an inode for log lines: it names the file, never a key. */
static void log_file_error(struct kekfs_fs *fs, struct kinode *ino, const char *what)
{
	char proc[64], path[PATH_MAX];
	ssize_t n = -1;

	if (inode_pin(fs->inodes, ino) == 0) {
		proc_path(proc, ino->fd);
		n = readlink(proc, path, sizeof(path) - 1);
		inode_unpin(fs->inodes, ino);
	}
	path[n > 0 ? n : 0] = '\0';
	log_msg(LOG_ERR, "%s: %s", n > 0 ? path : "(unknown file)", what);
}

static void log_crypt_error(struct kekfs_fs *fs, struct kinode *ino, int err)
{
	char what[160];

	if (err == -EBADMSG && ino->fc.dek)
		snprintf(what, sizeof(what),
			 "chunk %llu failed authentication (tampered or damaged)",
			 (unsigned long long)ino->fc.bad_chunk);
	else if (err == -EBADMSG)
		snprintf(what, sizeof(what), "%s", header_strerror(ino->fc.hdr_err));
	else if (err == -EKEYREVOKED)
		snprintf(what, sizeof(what), "%s (EKEYREVOKED)", header_strerror(HDR_ERR_SHREDDED));
	else
		snprintf(what, sizeof(what), "%s", strerror(-err));
	log_file_error(fs, ino, what);
}

/* Errors the kernel sees: authentication failures are EIO. */
static int errno_for_kernel(int err)
{
	return err == -EBADMSG ? EIO : -err;
}

/* Converts backing attributes to what the mount shows: plaintext sizes. */
static void attr_from_backing(struct kekfs_fs *fs, struct stat *st)
{
	uint64_t plain;

	if (S_ISREG(st->st_mode)) {
		if (geom_plain_size(&fs->vk.geom, (uint64_t)st->st_size, &plain) != 0)
			plain = 0; /* being created, or damaged: reads will say which */
		st->st_size = (off_t)plain;
	} else if (S_ISLNK(st->st_mode)) {
		st->st_size = (off_t)symlink_plain_len((size_t)st->st_size);
	}
}

static void log_file_error(struct kekfs_fs *fs, struct kinode *ino, const char *what);

/* A pinned directory's id: the volume's root id, else read once from its id file. */
static int dir_id_get(struct kekfs_fs *fs, struct kinode *dir, uint8_t id[NAME_DIRID_LEN])
{
	int rc = 0;

	if (dir == inode_table_root(fs->inodes)) {
		memcpy(id, fs->vol->root_dir_id, NAME_DIRID_LEN);
		return 0;
	}
	pthread_rwlock_rdlock(&dir->lock);
	if (dir->dir_id_known)
		memcpy(id, dir->dir_id, NAME_DIRID_LEN);
	pthread_rwlock_unlock(&dir->lock);
	if (dir->dir_id_known)
		return 0;
	rc = namedir_read_id(dir->fd, id);
	if (rc != 0) {
		log_file_error(fs, dir, "directory id missing or damaged");
		return rc == -ENOENT ? -EIO : rc;
	}
	pthread_rwlock_wrlock(&dir->lock);
	memcpy(dir->dir_id, id, NAME_DIRID_LEN);
	dir->dir_id_known = 1;
	pthread_rwlock_unlock(&dir->lock);
	return 0;
}

/* The backing form of a plaintext name in a pinned directory. 0 or -errno. */
static int backing_name(struct kekfs_fs *fs, struct kinode *dir, const char *name, struct bname *b)
{
	uint8_t id[NAME_DIRID_LEN];
	int rc = fs->nk ? dir_id_get(fs, dir, id) : 0;

	return rc ? rc : bname_make(fs->nk, id, name, b);
}

static int inode_stat(struct kekfs_fs *fs, struct kinode *ino, struct stat *st)
{
	if (fstatat(ino->fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	attr_from_backing(fs, st);
	return 0;
}

/* Set per request, before its handler runs: the kernel asked to clear setuid/setgid (see
 * FUSE_HANDLE_KILLPRIV_V2 below). */
static __thread int req_kill_suidgid;

/* Clears setuid, and setgid if group-executable, when kill (the request asks for it). */
static void suidgid_kill(int fd, int kill_them)
{
	char proc[64];
	struct stat st;
	mode_t kill = S_ISUID;

	if (!kill_them)
		return;
	proc_path(proc, fd);
	if (stat(proc, &st) != 0)
		return;
	if (st.st_mode & S_IXGRP)
		kill |= S_ISGID;
	if (st.st_mode & kill && chmod(proc, st.st_mode & 07777 & ~kill) != 0)
		log_msg(LOG_ERR, "cannot clear setuid/setgid after a write: %s", strerror(errno));
}

/* ---- encryption state of regular files ---- */

/* Makes the inode's DEK available through fd, loading the header on first use. */
static int crypt_acquire(struct kekfs_fs *fs, struct kinode *ino, int fd)
{
	int rc = 0;

	pthread_rwlock_wrlock(&ino->lock);
	if (ino->opens == 0 || !ino->fc.dek) {
		fileio_drop(&ino->fc);
		rc = fileio_load(fd, &fs->vk, &ino->fc);
		if (rc != 0)
			log_crypt_error(fs, ino, rc);
	}
	if (rc == 0)
		ino->opens++;
	pthread_rwlock_unlock(&ino->lock);
	return rc;
}

static void crypt_release(struct kinode *ino)
{
	pthread_rwlock_wrlock(&ino->lock);
	if (--ino->opens == 0)
		fileio_drop(&ino->fc);
	pthread_rwlock_unlock(&ino->lock);
}

/* Opens the backing file for I/O: always readable, since writes read-modify-write chunks. */
static int backing_open(struct kinode *ino, int flags)
{
	char proc[64];
	int acc = flags & O_ACCMODE, fd;

	proc_path(proc, ino->fd);
	/* O_NOATIME: reading the header is kekfs's business, not an access the user made. */
	fd = open(proc, (acc == O_RDONLY ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOATIME);
	if (fd < 0 && errno == EPERM)
		fd = open(proc, (acc == O_RDONLY ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* ---- pinning: an inode's fd stays open while an operation uses it ---- */

/* These take the fs, not the request: a request is gone once it has been replied to. */
static int pin(struct kekfs_fs *fs, struct kinode *ino)
{
	return inode_pin(fs->inodes, ino);
}

static void unpin(struct kekfs_fs *fs, struct kinode *ino)
{
	inode_unpin(fs->inodes, ino);
}

/* Pins two inodes (a rename's or link's), or neither. */
static int pin2(struct kekfs_fs *fs, struct kinode *a, struct kinode *b)
{
	int rc = pin(fs, a);

	if (rc == 0 && (rc = pin(fs, b)) != 0)
		unpin(fs, a);
	return rc;
}

static void unpin2(struct kekfs_fs *fs, struct kinode *a, struct kinode *b)
{
	unpin(fs, b);
	unpin(fs, a);
}

/* ---- lookup and attributes ---- */

/* Looks up a backing entry of dir (pinning it): a new lookup of its inode, in e. */
static int do_lookup_backing(struct kekfs_fs *fs, struct kinode *dir, const char *bname,
			     struct fuse_entry_param *e)
{
	struct kinode *ino;
	struct stat st;
	int fd;

	memset(e, 0, sizeof(*e));
	fd = pin(fs, dir);
	if (fd < 0)
		return -fd;
	fd = openat(dir->fd, bname, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		fd = -errno;
	unpin(fs, dir);
	if (fd < 0)
		return -fd;
	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
		int err = errno;
		close(fd);
		return err;
	}
	ino = inode_table_get(fs->inodes, fd, &st);
	if (!ino)
		return ENOMEM;
	attr_from_backing(fs, &st);
	e->ino = (uintptr_t)ino;
	e->attr = st;
	e->attr_timeout = ATTR_TIMEOUT;
	e->entry_timeout = ATTR_TIMEOUT;
	return 0;
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

static void kekfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	int err = do_lookup(req, parent, name, &e);

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

static void kekfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	inode_table_forget(fs_of(req)->inodes, inode_of(req, ino), nlookup);
	fuse_reply_none(req);
}

static void kekfs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
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
static void cached_writers_turn_away(struct kekfs_fs *fs)
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
static void write_mode_choose(struct kekfs_fs *fs, struct khandle *h, struct kinode *ino,
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
			attr_from_backing(fs, &st);
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
static void kekfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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

static void kekfs_setattr(fuse_req_t req, fuse_ino_t ino_id, struct stat *attr, int valid,
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
		suidgid_kill(ino->fd, req_kill_suidgid);
	unpin(fs, ino);
	if (rc == 0)
		attr_reply(req, ino_id, fi);
	else
		fuse_reply_err(req, errno_for_kernel(rc));
}

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
static int create_regular(fuse_req_t req, struct kinode *dir, const char *name, mode_t mode,
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
static int new_name_begin(fuse_req_t req, fuse_ino_t parent, const char *name, int hidden_err,
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
static void new_name_end(struct kekfs_fs *fs, struct kinode *dir, const struct bname *b, int rc)
{
	if (rc != 0 && rc != -EEXIST)
		namedir_long_remove(dir->fd, b);
	unpin(fs, dir);
}

static void kekfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			dev_t rdev)
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

static void kekfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
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

static void kekfs_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *dir = inode_of(req, parent);
	char enc[4096];
	struct bname b;
	int rc = symlink_seal(fs->vol->name_key, fs->vol->id, target, enc, sizeof(enc));

	if (rc == 0)
		rc = new_name_begin(req, parent, name, -EEXIST, &b);
	if (rc != 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (symlinkat(enc, dir->fd, b.name) != 0)
		rc = -errno;
	rc = reply_new_entry(req, parent, &b, rc);
	new_name_end(fs, dir, &b, rc);
}

static void kekfs_readlink(fuse_req_t req, fuse_ino_t ino_id)
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
	n = symlink_open(fs->vol->name_key, fs->vol->id, enc, target, sizeof(target));
	if (n < 0) {
		log_file_error(fs, ino, "symlink target failed authentication");
		fuse_reply_err(req, EIO);
		return;
	}
	fuse_reply_readlink(req, target);
	secmem_wipe(target, sizeof(target));
}

static void kekfs_link(fuse_req_t req, fuse_ino_t ino_id, fuse_ino_t parent, const char *name)
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

static void remove_entry(fuse_req_t req, fuse_ino_t parent, const char *name, int flags)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *dir = inode_of(req, parent);
	int rc = name_hidden(req, parent, name) ? EPERM : -pin(fs, dir);
	struct bname b;
	struct stat st;

	if (!rc && (rc = -backing_name(fs, dir, name, &b)) != 0)
		unpin(fs, dir);
	if (!rc) {
		if (flags || fstatat(dir->fd, b.name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			st.st_nlink = 0; /* only a last name frees anything */
		rc = -backing_remove(fs, dir->fd, b.name, flags == AT_REMOVEDIR);
		if (!rc && st.st_nlink == 1)
			inode_table_unlinked(fs->inodes, st.st_dev, st.st_ino);
		if (!rc)
			namedir_long_remove(dir->fd, &b);
		unpin(fs, dir);
	}
	fuse_reply_err(req, rc);
}

static void kekfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_entry(req, parent, name, 0);
}

static void kekfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
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
	if (victim.st_nlink == 1 && !S_ISDIR(victim.st_mode))
		inode_table_unlinked(fs->inodes, victim.st_dev, victim.st_ino);
	return 0;
}

static void kekfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
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

/* Remembers the backing file as the page cache now knows it (our writes are in it). */
static void cache_note_release(struct kinode *ino, int fd)
{
	pthread_rwlock_wrlock(&ino->lock);
	ino->cached_valid = fstat(fd, &ino->cached) == 0;
	pthread_rwlock_unlock(&ino->lock);
}

/* Attaches an open backing fd to a FUSE handle; honours O_TRUNC. Takes ownership of fd. */
static int handle_open(struct kekfs_fs *fs, struct kinode *ino, int fd, struct fuse_file_info *fi)
{
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
		suidgid_kill(fd, req_kill_suidgid);
	cache_check_open(ino, fd, fi);
	pthread_rwlock_unlock(&ino->lock);
	if (rc != 0) {
		crypt_release(ino);
		close(fd);
		free(h);
		return rc;
	}
	h->fd = fd;
	/* With the writeback cache the kernel appends itself and sends the right offsets. */
	h->append = !fs->writeback && (fi->flags & O_APPEND) != 0;
	write_mode_choose(fs, h, ino, fi);
	handle_track(fs, &h->link, 0);
	fi->fh = (uintptr_t)h;
	return 0;
}

static void kekfs_open(fuse_req_t req, fuse_ino_t ino_id, struct fuse_file_info *fi)
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
		rc = handle_open(fs, ino, fd, fi);
	else if (fd >= 0)
		close(fd);
	if (rc != 0)
		fuse_reply_err(req, errno_for_kernel(rc));
	else
		fuse_reply_open(req, fi);
}

static void kekfs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
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
	err = -handle_open(fs, ino, fd, fi);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_create(req, &e, fi);
}

static void kekfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct khandle *h = handle_of(fi);

	handle_untrack(fs_of(req), &h->link);
	cache_note_release(inode_of(req, ino), h->fd);
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
static void kekfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void kekfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
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
static int write_in_place(struct kekfs_fs *fs, struct kinode *ino, int fd, const char *buf,
			  size_t size, uint64_t at, ssize_t *n)
{
	struct range_hold hold;

	pthread_rwlock_rdlock(&ino->lock);
	chunks_acquire(fs, ino, &hold, at, size, 1);
	*n = fileio_write_inside(fd, &fs->vk, &ino->fc, buf, size, at);
	if (*n > 0)
		suidgid_kill(fd, req_kill_suidgid);
	range_lock_release(&ino->chunks, &hold);
	pthread_rwlock_unlock(&ino->lock);
	return *n != 0;
}

static void kekfs_read(fuse_req_t req, fuse_ino_t ino_id, size_t size, off_t off,
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

static void kekfs_write(fuse_req_t req, fuse_ino_t ino_id, const char *buf, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = inode_of(req, ino_id);
	struct khandle *h = handle_of(fi);
	uint64_t at = (uint64_t)off;
	ssize_t n = 0;

	if (h->append || !write_in_place(fs, ino, h->fd, buf, size, at, &n)) {
		pthread_rwlock_wrlock(&ino->lock);
		n = h->append ? fileio_size(h->fd, &fs->vk.geom, &at) : 0;
		if (n == 0 && atomic_load(&fs->space.low)) /* a full disk fails it cleanly */
			n = fileio_reserve(h->fd, &fs->vk.geom, at + size);
		if (n == 0)
			n = fileio_write(h->fd, &fs->vk, &ino->fc, buf, size, at);
		if (n > 0)
			suidgid_kill(h->fd, req_kill_suidgid);
		pthread_rwlock_unlock(&ino->lock);
	}
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

static void kekfs_fallocate(fuse_req_t req, fuse_ino_t ino_id, int mode, off_t off, off_t len,
			    struct fuse_file_info *fi)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = inode_of(req, ino_id);
	struct khandle *h = handle_of(fi);
	const struct chunk_geom *g = &fs->vk.geom;
	uint64_t cur, end = (uint64_t)off + (uint64_t)len;
	int rc;

	if (mode & ~FALLOC_FL_KEEP_SIZE) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	pthread_rwlock_wrlock(&ino->lock);
	rc = fileio_size(h->fd, g, &cur);
	/* Reserve the backing space the plaintext range will take, then grow if asked. */
	if (rc == 0 &&
	    fallocate(h->fd, FALLOC_FL_KEEP_SIZE, (off_t)geom_chunk_off(g, (uint64_t)off / g->size),
		      (off_t)(geom_backing_size(g, end) -
			      geom_chunk_off(g, (uint64_t)off / g->size))) != 0)
		rc = -errno;
	if (rc == 0 && !(mode & FALLOC_FL_KEEP_SIZE) && end > cur)
		rc = fileio_truncate(h->fd, &fs->vk, &ino->fc, end);
	/* FUSE_FALLOCATE carries no kill flag: as a local filesystem does for callers without
	 * CAP_FSETID, a fallocate by anyone but root clears setuid/setgid. */
	if (rc == 0)
		suidgid_kill(h->fd, fuse_req_ctx(req)->uid != 0);
	pthread_rwlock_unlock(&ino->lock);
	fuse_reply_err(req, errno_for_kernel(rc));
}

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

static void kekfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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
	char enc[NAME_ENC_SIZE];
	int rc = 0;

	if (is_dot_or_dotdot(bname))
		return bname;
	if (backing_hidden(fs, ino, bname))
		return NULL;
	if (!fs->nk)
		return bname;
	if (name_is_long(bname))
		rc = namedir_long_read(dirfd(d->dp), bname, enc);
	if (rc == 0 &&
	    name_decrypt(fs->nk, d->dir_id, name_is_long(bname) ? enc : bname, plain) > 0)
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

static void kekfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			  struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 0);
}

static void kekfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			      struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 1);
}

static void kekfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct kdir *d = dir_of(fi);

	(void)ino;
	handle_untrack(fs_of(req), &d->link);
	closedir(d->dp);
	free(d);
	fuse_reply_err(req, 0);
}

static void kekfs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	int fd = dirfd(dir_of(fi)->dp);
	int rc = datasync ? fdatasync(fd) : fsync(fd);

	(void)ino;
	fuse_reply_err(req, rc == 0 ? 0 : errno);
}

static void kekfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	(void)ino;
	if (fstatvfs(inode_table_root(fs_of(req)->inodes)->fd, &sv) != 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}

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
			rc = setxattr(proc, bname, sealed, size + OBJ_OVERHEAD, flags) == 0 ? 0
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

static void kekfs_setxattr(fuse_req_t req, fuse_ino_t ino_id, const char *name, const char *value,
			   size_t size, int flags)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = inode_of(req, ino_id);

	if (xattr_pin(req, ino_id, name) == 0) {
		setxattr_pinned(req, ino_id, name, value, size, flags);
		unpin(fs, ino);
	}
}

static void kekfs_getxattr(fuse_req_t req, fuse_ino_t ino_id, const char *name, size_t size)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = inode_of(req, ino_id);

	if (xattr_pin(req, ino_id, name) == 0) {
		getxattr_pinned(req, ino_id, name, size);
		unpin(fs, ino);
	}
}

static void kekfs_listxattr(fuse_req_t req, fuse_ino_t ino_id, size_t size)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = inode_of(req, ino_id);

	if (xattr_pin(req, ino_id, NULL) == 0) {
		listxattr_pinned(req, ino_id, size);
		unpin(fs, ino);
	}
}

static void kekfs_removexattr(fuse_req_t req, fuse_ino_t ino_id, const char *name)
{
	struct kekfs_fs *fs = fs_of(req);
	struct kinode *ino = inode_of(req, ino_id);

	if (xattr_pin(req, ino_id, name) == 0) {
		removexattr_pinned(req, ino_id, name);
		unpin(fs, ino);
	}
}

/* ---- FUSE_HANDLE_KILLPRIV_V2 ---- */

/*
 * Without FUSE_HANDLE_KILLPRIV_V2 the kernel asks GETXATTR security.capability before every
 * write(2) through the mount (and holds the file's lock meanwhile): one round trip per write,
 * 4x fewer random-write IOPS here. With it, the kernel leaves clearing setuid/setgid to the
 * filesystem and says when, per request. libfuse 3.14 cannot negotiate it (3.17 can), so
 * kekfs reads and writes /dev/fuse itself (fuse_session_custom_io): it adds the flag to the
 * INIT reply when the kernel offered it, and notes the kill flag of each request, which
 * libfuse does not pass on, for the handler (libfuse runs a request on the thread that read
 * it). The backing filesystem drops security.capability itself on kekfs's writes and chowns,
 * and its chown clears setuid.
 */

/* Whether a raw request asks to clear setuid/setgid; notes the INIT request's offer. */
static int request_kill_flag(struct kekfs_fs *fs, const void *buf, size_t n)
{
	const struct fuse_in_header *h = buf;
	const void *arg = h + 1;
	size_t len = n > sizeof(*h) ? n - sizeof(*h) : 0;

	if (n < sizeof(*h))
		return 0;
	switch (h->opcode) {
	case FUSE_INIT:
		if (len >= offsetof(struct fuse_init_in, flags) + sizeof(uint32_t)) {
			fs->killpriv_offered = (((const struct fuse_init_in *)arg)->flags &
						FUSE_HANDLE_KILLPRIV_V2) != 0;
			atomic_store(&fs->init_unique, h->unique);
		}
		return 0;
	case FUSE_WRITE:
		return len >= sizeof(struct fuse_write_in) &&
		       (((const struct fuse_write_in *)arg)->write_flags & FUSE_WRITE_KILL_SUIDGID);
	case FUSE_SETATTR:
		return len >= sizeof(struct fuse_setattr_in) &&
		       (((const struct fuse_setattr_in *)arg)->valid & FATTR_KILL_SUIDGID);
	case FUSE_OPEN:
		return len >= sizeof(struct fuse_open_in) &&
		       (((const struct fuse_open_in *)arg)->open_flags & FUSE_OPEN_KILL_SUIDGID);
	default:
		return 0;
	}
}

static ssize_t fuse_io_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t n = read(fd, buf, len);

	req_kill_suidgid = n > 0 ? request_kill_flag(userdata, buf, (size_t)n) : 0;
	return n;
}

static ssize_t fuse_io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct kekfs_fs *fs = userdata;
	struct fuse_out_header *out = iov[0].iov_base;
	uint64_t init = atomic_load_explicit(&fs->init_unique, memory_order_relaxed);

	if (init && count >= 2 && iov[0].iov_len >= sizeof(*out) && out->unique == init) {
		if (out->error == 0 && fs->killpriv_offered &&
		    iov[1].iov_len >= offsetof(struct fuse_init_out, flags) + sizeof(uint32_t))
			((struct fuse_init_out *)iov[1].iov_base)->flags |= FUSE_HANDLE_KILLPRIV_V2;
		atomic_store(&fs->init_unique, 0);
	}
	return writev(fd, iov, count);
}

int kekfs_fs_attach_io(struct kekfs_fs *fs, struct fuse_session *se)
{
	static const struct fuse_custom_io io = {.read = fuse_io_read, .writev = fuse_io_writev};

	(void)fs; /* the hooks get it as the session's userdata */
	return fuse_session_custom_io(se, &io, fuse_session_fd(se));
}

/* ---- session ---- */

static void kekfs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct kekfs_fs *fs = userdata;
	unsigned budget;

	inode_table_fds(fs->inodes, &budget);
	if (budget)
		log_msg(LOG_INFO, "keeping at most %u backing fds open for cached inodes", budget);
	else
		log_msg(LOG_WARNING,
			"cannot reopen inodes by file handle (needs CAP_DAC_READ_SEARCH "
			"and a backing filesystem that exports handles): one fd per cached inode");
	spacewatch_start(&fs->space);
	conn->max_write = MAX_IO;
	conn->max_readahead = MAX_IO;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	conn->want &= ~(unsigned)FUSE_CAP_SPLICE_READ;
	/* Small writes then cost no read-modify-write round trip each; backing files are
	 * always opened readable, so the kernel may read through write-only handles. */
	if (conn->capable & FUSE_CAP_WRITEBACK_CACHE) {
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
		fs->writeback = 1;
	}
	if (conn->capable & FUSE_CAP_DONT_MASK) {
		conn->want |= FUSE_CAP_DONT_MASK;
		fs->dont_mask = 1;
		umask(0);
	}
	/* The kernel then checks the ACLs the backing files hold (it turns on
	 * default_permissions and caches them); the backing filesystem keeps mode and mask in
	 * step and applies default ACLs, as kekfs sets both through it. */
	if (conn->capable & FUSE_CAP_POSIX_ACL) {
		conn->want |= FUSE_CAP_POSIX_ACL;
		fs->posix_acl = 1;
	}
}

static const struct fuse_lowlevel_ops ops = {
    .init = kekfs_init,
    .lookup = kekfs_lookup,
    .forget = kekfs_forget,
    .forget_multi = kekfs_forget_multi,
    .getattr = kekfs_getattr,
    .setattr = kekfs_setattr,
    .readlink = kekfs_readlink,
    .mknod = kekfs_mknod,
    .mkdir = kekfs_mkdir,
    .symlink = kekfs_symlink,
    .link = kekfs_link,
    .unlink = kekfs_unlink,
    .rmdir = kekfs_rmdir,
    .rename = kekfs_rename,
    .open = kekfs_open,
    .create = kekfs_create,
    .read = kekfs_read,
    .write = kekfs_write,
    .flush = kekfs_flush,
    .release = kekfs_release,
    .fsync = kekfs_fsync,
    .fallocate = kekfs_fallocate,
    .opendir = kekfs_opendir,
    .readdir = kekfs_readdir,
    .readdirplus = kekfs_readdirplus,
    .releasedir = kekfs_releasedir,
    .fsyncdir = kekfs_fsyncdir,
    .statfs = kekfs_statfs,
    .setxattr = kekfs_setxattr,
    .getxattr = kekfs_getxattr,
    .listxattr = kekfs_listxattr,
    .removexattr = kekfs_removexattr,
};

const struct fuse_lowlevel_ops *kekfs_fs_ops(void)
{
	return &ops;
}

/*
 * Each FUSE thread would get its own malloc arena, each keeping a few MiB of freed request
 * buffers (1 MiB requests): two arenas shared by all threads keep the daemon's peak RSS
 * near 31 MiB instead of 54 MiB over the benchmark's workloads (issue 7 asks < 64 MiB).
 */
static void malloc_arenas_limit(void)
{
	mallopt(M_ARENA_MAX, 2);
}

/* One helper per other online CPU (at most 7) shares the chunk crypto of large requests. */
static struct par_pool *crypto_pool_new(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	return par_pool_new(cpus > 8 ? 7 : cpus > 1 ? (unsigned)cpus - 1 : 0);
}

struct kekfs_fs *kekfs_fs_new(const struct kekfs_fs_config *cfg)
{
	struct kekfs_fs *fs = calloc(1, sizeof(*fs));

	if (!fs)
		return NULL;
	fs->inodes = inode_table_new(cfg->backing_fd);
	if (!fs->inodes) {
		free(fs);
		return NULL;
	}
	fs->vol = cfg->vol;
	fs->kr = cfg->kr;
	fs->vk.vol = cfg->vol;
	fs->vk.kr = cfg->kr;
	geom_init(&fs->vk.geom, cfg->vol->cipher, cfg->vol->chunk_shift);
	if (cfg->vol->name_mode == NAMES_AES_SIV) {
		fs->nk = name_keys_new(cfg->vol->name_key);
		if (!fs->nk) {
			inode_table_free(fs->inodes);
			free(fs);
			return NULL;
		}
		fs->vk.nk = fs->nk;
	}
	malloc_arenas_limit();
	fs->vk.pool = crypto_pool_new(); /* NULL: every request runs on its own thread */
	fs->is_root = geteuid() == 0;
	spacewatch_init(&fs->space, cfg->backing_fd, cfg->mountpoint, fs->vk.geom.size,
			fs->vk.geom.overhead);
	pthread_mutex_init(&fs->handles_lock, NULL);
	fs->handles.next = fs->handles.prev = &fs->handles;
	return fs;
}

/* Handles the kernel never released because the session ended first. */
static void handles_free(struct kekfs_fs *fs)
{
	while (fs->handles.next != &fs->handles) {
		struct open_handle *h = fs->handles.next;

		handle_untrack(fs, h);
		if (h->is_dir)
			closedir(((struct kdir *)h)->dp);
		else
			close(((struct khandle *)h)->fd);
		free(h);
	}
}

void kekfs_fs_free(struct kekfs_fs *fs)
{
	if (!fs)
		return;
	handles_free(fs);
	inode_table_free(fs->inodes);
	name_keys_free(fs->nk);
	par_pool_free(fs->vk.pool);
	spacewatch_destroy(&fs->space);
	pthread_mutex_destroy(&fs->handles_lock);
	free(fs);
}

struct inode_table *kekfs_fs_inodes(struct kekfs_fs *fs)
{
	return fs->inodes;
}

int kekfs_fs_backing_fd(struct kekfs_fs *fs)
{
	return inode_table_root(fs->inodes)->fd;
}

void kekfs_fs_set_session(struct kekfs_fs *fs, struct fuse_session *se)
{
	fs->se = se;
}

/*
 * After a shred: the kernel must not serve the file's plaintext from its page cache, nor a
 * removed name from its dentry cache. Either inode may be NULL; unknown inodes are fine.
 */
void kekfs_fs_invalidate(void *arg, struct kinode *parent, const char *name, struct kinode *ino)
{
	struct kekfs_fs *fs = arg;
	struct kinode *root;
	fuse_ino_t pid;

	if (!fs->se)
		return;
	if (ino)
		fuse_lowlevel_notify_inval_inode(fs->se, (fuse_ino_t)(uintptr_t)ino, 0, 0);
	if (parent && name) {
		root = inode_table_root(fs->inodes); /* the root is not in the table's hash */
		pid = parent->dev == root->dev && parent->ino == root->ino
			  ? FUSE_ROOT_ID
			  : (fuse_ino_t)(uintptr_t)parent;
		fuse_lowlevel_notify_inval_entry(fs->se, pid, name, strlen(name));
	}
}
