/*
 * FUSE low-level operations. Modelled on libfuse's passthrough_ll.c: every inode the kernel
 * knows holds an O_PATH fd of its backing object, so all work is relative to directory fds
 * (*at() calls) and renames or long paths need no path rebuilding. Regular files add an
 * encryption state (header, DEK, lock) shared by all handles of the inode.
 */
#include "fs_priv.h"

struct kekfs_fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

struct kinode *inode_of(fuse_req_t req, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? inode_table_root(fs_of(req)->inodes)
				   : (struct kinode *)(uintptr_t)ino;
}

void handle_track(struct kekfs_fs *fs, struct open_handle *h, int is_dir)
{
	h->is_dir = is_dir;
	pthread_mutex_lock(&fs->handles_lock);
	h->next = fs->handles.next;
	h->prev = &fs->handles;
	fs->handles.next->prev = h;
	fs->handles.next = h;
	pthread_mutex_unlock(&fs->handles_lock);
}

void handle_untrack(struct kekfs_fs *fs, struct open_handle *h)
{
	pthread_mutex_lock(&fs->handles_lock);
	h->prev->next = h->next;
	h->next->prev = h->prev;
	pthread_mutex_unlock(&fs->handles_lock);
}

struct khandle *handle_of(struct fuse_file_info *fi)
{
	return (struct khandle *)(uintptr_t)fi->fh;
}

void proc_path(char buf[64], int fd)
{
	snprintf(buf, 64, "/proc/self/fd/%d", fd);
}

/* Plaintext names the mount refuses: .kekfs at the root, when names are stored as given. */
int name_hidden(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	return !fs_of(req)->nk && parent == FUSE_ROOT_ID && strcmp(name, VOLUME_DIR) == 0;
}

/* Backing entries the mount never shows: .kekfs, and with encrypted names every dot name
 * (directory ids, long-name side files, directories being made). */
int backing_hidden(struct kekfs_fs *fs, fuse_ino_t parent, const char *bname)
{
	if (fs->nk)
		return name_is_internal(bname);
	return parent == FUSE_ROOT_ID && strcmp(bname, VOLUME_DIR) == 0;
}

/* Backing path of an inode for log lines: it names the file, never a key. */
void log_file_error(struct kekfs_fs *fs, struct kinode *ino, const char *what)
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

void log_crypt_error(struct kekfs_fs *fs, struct kinode *ino, int err)
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
int errno_for_kernel(int err)
{
	return err == -EBADMSG ? EIO : -err;
}

/* The length of a long symlink target whose backing symlink fd is (st_size: what it holds). */
static off_t long_target_length(struct kekfs_fs *fs, int fd)
{
	char ref[LINKREF_LEN + 1];
	ssize_t n = fd >= 0 ? readlinkat(fd, "", ref, sizeof(ref)) : -1;

	if (n != LINKREF_LEN)
		return 0;
	ref[n] = '\0';
	n = linktarget_length(kekfs_fs_backing_fd(fs), ref);
	return n < 0 ? 0 : (off_t)n; /* a damaged one: readlink says so */
}

/* Converts backing attributes of the object fd to what the mount shows: plaintext sizes. */
void attr_from_backing(struct kekfs_fs *fs, int fd, struct stat *st)
{
	uint64_t plain;

	if (S_ISREG(st->st_mode)) {
		if (fileio_torn_state(&fs->vk.geom, (uint64_t)st->st_size, &plain) < 0)
			plain = 0; /* damaged: reads will say so */
		st->st_size = (off_t)plain;
	} else if (S_ISLNK(st->st_mode) && st->st_size == LINKREF_LEN) {
		st->st_size = long_target_length(fs, fd);
	} else if (S_ISLNK(st->st_mode)) {
		st->st_size = (off_t)symlink_plain_len((size_t)st->st_size);
	}
}

/* A pinned directory's id: the volume's root id, else read once from its id file. */
int dir_id_get(struct kekfs_fs *fs, struct kinode *dir, uint8_t id[NAME_DIRID_LEN])
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
int backing_name(struct kekfs_fs *fs, struct kinode *dir, const char *name, struct bname *b)
{
	uint8_t id[NAME_DIRID_LEN];
	int rc = fs->nk ? dir_id_get(fs, dir, id) : 0;

	return rc ? rc : bname_make(fs->nk, id, name, b);
}

int inode_stat(struct kekfs_fs *fs, struct kinode *ino, struct stat *st)
{
	if (fstatat(ino->fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	attr_from_backing(fs, ino->fd, st);
	return 0;
}

/* Set per request, before its handler runs: the kernel asked to clear setuid/setgid (see
 * FUSE_HANDLE_KILLPRIV_V2 below). */
__thread int req_kill_suidgid;

/* Whether the caller of req is in group gid (its own group or a supplementary one), or is
 * root, which may keep setgid as CAP_FSETID lets it. */
static int caller_in_group(fuse_req_t req, gid_t gid)
{
	gid_t small[64], *groups = small;
	int n, in = fuse_req_ctx(req)->uid == 0 || fuse_req_ctx(req)->gid == gid;

	n = in ? 0 : fuse_req_getgroups(req, 64, small);
	if (n > 64 && (groups = malloc((size_t)n * sizeof(*groups))) != NULL)
		n = fuse_req_getgroups(req, n, groups);
	for (int i = 0; groups && i < n && !in; i++)
		in = groups[i] == gid;
	if (groups != small)
		free(groups);
	return in;
}

/*
 * Clears setuid and setgid as a local filesystem does after a write by a caller without
 * CAP_FSETID (kill_them): setuid always, setgid if the file is group-executable or the caller
 * is not in its group (a held-out suite found the second case kept).
 */
void suidgid_kill(fuse_req_t req, int fd, int kill_them)
{
	char proc[64];
	struct stat st;
	mode_t kill = S_ISUID;

	if (!kill_them)
		return;
	proc_path(proc, fd);
	if (stat(proc, &st) != 0 || !(st.st_mode & (S_ISUID | S_ISGID)))
		return;
	if ((st.st_mode & S_ISGID) && ((st.st_mode & S_IXGRP) || !caller_in_group(req, st.st_gid)))
		kill |= S_ISGID;
	if (st.st_mode & kill && chmod(proc, st.st_mode & 07777 & ~kill) != 0)
		log_msg(LOG_ERR, "cannot clear setuid/setgid after a write: %s", strerror(errno));
}

/* ---- encryption state of regular files ---- */

/* Makes the inode's DEK available through fd, loading the header on first use. */
int crypt_acquire(struct kekfs_fs *fs, struct kinode *ino, int fd)
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

void crypt_release(struct kinode *ino)
{
	pthread_rwlock_wrlock(&ino->lock);
	if (--ino->opens == 0)
		fileio_drop(&ino->fc);
	pthread_rwlock_unlock(&ino->lock);
}

/* Opens the backing file for I/O: always readable, since writes read-modify-write chunks. */
int backing_open(struct kinode *ino, int flags)
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
int pin(struct kekfs_fs *fs, struct kinode *ino)
{
	return inode_pin(fs->inodes, ino);
}

void unpin(struct kekfs_fs *fs, struct kinode *ino)
{
	inode_unpin(fs->inodes, ino);
}

/* Pins two inodes (a rename's or link's), or neither. */
int pin2(struct kekfs_fs *fs, struct kinode *a, struct kinode *b)
{
	int rc = pin(fs, a);

	if (rc == 0 && (rc = pin(fs, b)) != 0)
		unpin(fs, a);
	return rc;
}

void unpin2(struct kekfs_fs *fs, struct kinode *a, struct kinode *b)
{
	unpin(fs, b);
	unpin(fs, a);
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
	/* Lookups of "." and ".." (ops_attr.c): file handles outlive the kernel's inode cache,
	 * for NFS re-export and open_by_handle_at. */
	if (conn->capable & FUSE_CAP_EXPORT_SUPPORT)
		conn->want |= FUSE_CAP_EXPORT_SUPPORT;
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
    .lseek = kekfs_lseek,
    .copy_file_range = kekfs_copy_file_range,
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
