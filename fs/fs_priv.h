/*
 * What the files of the FUSE daemon share: the state every operation sees, the handles, and
 * the helpers and op handlers each family's file provides to the others and to the ops
 * table (fs/fuse_ops.c). Nothing outside fs/ includes it.
 */
#ifndef KEKFS_FS_PRIV_H
#define KEKFS_FS_PRIV_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

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
#include "../format/linktarget.h"
#include "../format/namedir.h"
#include "../format/objcrypt.h"
#include "../volume/fileio.h"
#include "../volume/holes.h"
#include "../volume/inode_table.h"
#include "../volume/log.h"
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
	int direct;	      /* opened O_DIRECT */
	_Atomic int wrote_around; /* wrote around the page cache: do not keep it past release */
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

/* The session's side of the fs (fs/session.c) */
const struct fuse_lowlevel_ops *kekfs_fs_ops(void);
/* The session, once made: cache invalidations after a shred need it. */
void kekfs_fs_set_session(struct kekfs_fs *fs, struct fuse_session *se);
/*
 * Reads and writes the mounted session's /dev/fuse through kekfs, to negotiate
 * FUSE_HANDLE_KILLPRIV_V2 (which libfuse 3.14 cannot). Call after fuse_session_mount,
 * before the loop. 0 or -errno.
 */
int kekfs_fs_attach_io(struct kekfs_fs *fs, struct fuse_session *se);

/* FUSE_HANDLE_KILLPRIV_V2: whether the request being served asks to clear setuid/setgid. */
extern __thread int req_kill_suidgid;

/* shared helpers (fs/fuse_ops.c) */
void attr_from_backing(struct kekfs_fs *fs, int fd, struct stat *st);
int backing_hidden(struct kekfs_fs *fs, fuse_ino_t parent, const char *bname);
int backing_name(struct kekfs_fs *fs, struct kinode *dir, const char *name, struct bname *b);
int backing_open(struct kinode *ino, int flags);
int crypt_acquire(struct kekfs_fs *fs, struct kinode *ino, int fd);
void crypt_release(struct kinode *ino);
int dir_id_get(struct kekfs_fs *fs, struct kinode *dir, uint8_t id[NAME_DIRID_LEN]);
int errno_for_kernel(int err);
struct kekfs_fs *fs_of(fuse_req_t req);
struct khandle *handle_of(struct fuse_file_info *fi);
void handle_track(struct kekfs_fs *fs, struct open_handle *h, int is_dir);
void handle_untrack(struct kekfs_fs *fs, struct open_handle *h);
struct kinode *inode_of(fuse_req_t req, fuse_ino_t ino);
int inode_stat(struct kekfs_fs *fs, struct kinode *ino, struct stat *st);
void log_crypt_error(struct kekfs_fs *fs, struct kinode *ino, int err);
void log_file_error(struct kekfs_fs *fs, struct kinode *ino, const char *what);
int name_hidden(fuse_req_t req, fuse_ino_t parent, const char *name);
int pin(struct kekfs_fs *fs, struct kinode *ino);
int pin2(struct kekfs_fs *fs, struct kinode *a, struct kinode *b);
void proc_path(char buf[64], int fd);
void suidgid_kill(fuse_req_t req, int fd, int kill_them);
void unpin(struct kekfs_fs *fs, struct kinode *ino);
void unpin2(struct kekfs_fs *fs, struct kinode *a, struct kinode *b);

/* lookup and attributes (fs/ops_attr.c) */
void cached_writers_turn_away(struct kekfs_fs *fs);
int cached_writer_open(struct kekfs_fs *fs, fuse_ino_t ino);
int do_lookup_backing(struct kekfs_fs *fs, struct kinode *dir, const char *bname,
		      struct fuse_entry_param *e);
void kekfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void kekfs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets);
void kekfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void kekfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void kekfs_setattr(fuse_req_t req, fuse_ino_t ino_id, struct stat *attr, int valid,
		   struct fuse_file_info *fi);
void kekfs_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			   struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			   struct fuse_file_info *fi_out, size_t len, int flags);
void write_mode_choose(struct kekfs_fs *fs, struct khandle *h, struct kinode *ino,
		       struct fuse_file_info *fi);

/* creating and removing names (fs/ops_names.c) */
int create_regular(fuse_req_t req, struct kinode *dir, const char *name, mode_t mode,
		   struct file_crypt *fc);
void kekfs_link(fuse_req_t req, fuse_ino_t ino_id, fuse_ino_t parent, const char *name);
void kekfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void kekfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void kekfs_readlink(fuse_req_t req, fuse_ino_t ino_id);
void kekfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		  const char *newname, unsigned int flags);
void kekfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void kekfs_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name);
void kekfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
int new_name_begin(fuse_req_t req, fuse_ino_t parent, const char *name, int hidden_err,
		   struct bname *b);
void new_name_end(struct kekfs_fs *fs, struct kinode *dir, const struct bname *b, int rc);

/* open files (fs/ops_file.c) */
void kekfs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  struct fuse_file_info *fi);
void kekfs_fallocate(fuse_req_t req, fuse_ino_t ino_id, int mode, off_t off, off_t len,
		     struct fuse_file_info *fi);
void kekfs_lseek(fuse_req_t req, fuse_ino_t ino_id, off_t off, int whence,
		 struct fuse_file_info *fi);
void kekfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void kekfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void kekfs_open(fuse_req_t req, fuse_ino_t ino_id, struct fuse_file_info *fi);
void kekfs_read(fuse_req_t req, fuse_ino_t ino_id, size_t size, off_t off,
		struct fuse_file_info *fi);
void kekfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void kekfs_write(fuse_req_t req, fuse_ino_t ino_id, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi);

/* directories (fs/ops_dir.c) */
void kekfs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void kekfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void kekfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi);
void kekfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi);
void kekfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void kekfs_statfs(fuse_req_t req, fuse_ino_t ino);

/* extended attributes (fs/ops_xattr.c) */
void kekfs_getxattr(fuse_req_t req, fuse_ino_t ino_id, const char *name, size_t size);
void kekfs_listxattr(fuse_req_t req, fuse_ino_t ino_id, size_t size);
void kekfs_removexattr(fuse_req_t req, fuse_ino_t ino_id, const char *name);
void kekfs_setxattr(fuse_req_t req, fuse_ino_t ino_id, const char *name, const char *value,
		    size_t size, int flags);

#endif
