/*
 * The backing side of encrypted names: each directory's id file, long-name side files, and
 * making and removing directories that carry an id. Works on directory fds (O_PATH is
 * enough), so the FUSE layer stays thin. No FUSE here; layout in docs/FORMAT.md.
 */
#ifndef KEKFS_NAMEDIR_H
#define KEKFS_NAMEDIR_H

#include <stdint.h>
#include <sys/types.h>

#include "names.h"

/* One plaintext name's backing form: the entry's name, and its full encoding if long. */
struct bname {
	char name[NAME_ENC_SIZE]; /* the backing directory entry */
	char enc[NAME_ENC_SIZE];  /* full encrypted name (differs from name when is_long) */
	int is_long;
};

/* Encrypts name for a directory (nk NULL: plaintext names). 0, -EINVAL or -ENAMETOOLONG. */
int bname_make(const struct name_keys *nk, const uint8_t dir_id[NAME_DIRID_LEN], const char *name,
	       struct bname *b);

/* Reads a backing directory's id. -EIO if the id file is missing, not 16 bytes or no file. */
int namedir_read_id(int dirfd, uint8_t id[NAME_DIRID_LEN]);

/*
 * Creates directory `name` in parentfd with a fresh id: made under a temporary name, the
 * id written and synced, then renamed into place, so no directory is ever seen without
 * its id. 0 or -errno (-EEXIST if the name is taken).
 */
int namedir_mkdir(int parentfd, const char *name, mode_t mode);

/*
 * Removes directory `name` if it holds nothing but its id (and orphaned side files).
 * -ENOTEMPTY otherwise; the id is put back if the removal fails.
 */
int namedir_rmdir(int parentfd, const char *name);

/*
 * Before a directory is renamed over directory `name`: the victim must be empty, and its id
 * file goes (so the backing rename can replace it). saved receives the id for
 * namedir_victim_restore. 1 if an id was removed, 0 if none, or -errno.
 */
int namedir_victim_prepare(int parentfd, const char *name, uint8_t saved[NAME_DIRID_LEN]);

/* Puts back a victim's id after a failed rename. */
void namedir_victim_restore(int parentfd, const char *name, const uint8_t id[NAME_DIRID_LEN]);

/* Writes the side file of a long name (before its object exists). 0 or -errno. */
int namedir_long_write(int dirfd, const struct bname *b);

/* Removes the side file of a long name (after its object is gone). */
void namedir_long_remove(int dirfd, const struct bname *b);

/* 1 if name is a long name's side file whose entry is gone (left by a crash): safe to drop. */
int namedir_side_orphan(int dirfd, const char *name);

/* Reads and checks the full encoding of a long backing name. 0, or -EBADMSG / -EIO / -errno. */
int namedir_long_read(int dirfd, const char *backing, char enc[NAME_ENC_SIZE]);

/*
 * The plaintext name of the backing entry bname of the directory dirfd (id dir_id): its long
 * name read from its side file first if it has one. The name's length, -ENOLINK if the side
 * file is missing or damaged, or -EBADMSG if the name does not decrypt here.
 */
__attribute__((warn_unused_result)) int namedir_entry_plain(int dirfd, const struct name_keys *nk,
							    const uint8_t dir_id[NAME_DIRID_LEN],
							    const char *bname,
							    char plain[NAME_PLAIN_MAX + 1]);

/*
 * Maps a plaintext path (relative to the volume root; "/" separated) to its backing path
 * relative to the backing directory rootfd, or back. Every directory on the way must exist
 * (the last component need not, when encrypting). nk NULL: plaintext names (copied).
 * 0, -EINVAL (".." or an empty path), -ENOENT, -EBADMSG (a name that does not decrypt),
 * -ENAMETOOLONG, or -errno.
 */
int namepath_encrypt(int rootfd, const struct name_keys *nk, const uint8_t root_id[NAME_DIRID_LEN],
		     const char *plain, char *out, size_t out_size);
__attribute__((warn_unused_result)) int namepath_decrypt(int rootfd, const struct name_keys *nk,
							 const uint8_t root_id[NAME_DIRID_LEN],
							 const char *backing, char *out,
							 size_t out_size);

/*
 * Opens the directory of backing path bpath ("/a/b", as namepath_encrypt makes it) beneath
 * rootfd, through no symbolic link (backing_open_beneath); *last points at its last name
 * inside bpath (left as it was). The fd, or -errno.
 */
int namepath_open_parent(int rootfd, char *bpath, const char **last);

#endif
