/*
 * Symlink targets too long for a backing symlink once sealed and encoded (more than
 * SYMLINK_MAX_TARGET bytes, up to PATH_MAX - 1, as a plain directory takes). The target is
 * sealed as a short one is, into a side object .kekfs/links/ID written durably before the
 * symlink is made; the backing symlink then holds LINKREF_MARK ID. ID is the base64url
 * BLAKE2b-256 of the side object, so an edited or swapped object is refused, and a crash
 * leaves at worst an object no symlink names, which fsck finds. No FUSE here.
 */
#ifndef KEKFS_LINKTARGET_H
#define KEKFS_LINKTARGET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LINKTARGET_DIR "links"	  /* in .kekfs */
#define LINKREF_MARK '~'	  /* never in a base64url inline target */
#define LINKREF_ID_LEN 43	  /* base64url of 32 bytes, unpadded */
#define LINKREF_LEN (1 + LINKREF_ID_LEN) /* shorter than any inline target (54 at least) */

/* 1 if a backing symlink's content (NUL-terminated) names a side object: the mark and an ID
 * of base64url characters only, so it can never name anything outside .kekfs/links. */
int linkref_is(const char *content);

/*
 * Seals target (any length below PATH_MAX) into a new side object of the volume whose
 * backing directory is backing_fd, and puts the content the symlink must hold in ref.
 * 0, or -errno / BACKING_ERR_*.
 */
int linktarget_store(int backing_fd, const uint8_t name_key[32], const uint8_t volume_id[16],
		     const char *target, char ref[LINKREF_LEN + 1]);

/* Opens the side object ref names into out (NUL-terminated): the target's length, -EBADMSG
 * if it is not the object ref names or not authentic, or -errno / BACKING_ERR_*. */
__attribute__((warn_unused_result)) ssize_t linktarget_load(int backing_fd,
							    const uint8_t name_key[32],
							    const uint8_t volume_id[16],
							    const char *ref, char *out,
							    size_t out_size);

/* The length of the target in the side object ref names (for st_size); -errno if none. */
ssize_t linktarget_length(int backing_fd, const char *ref);

/* Removes the side object ref names, once the last symlink holding ref is gone. */
int linktarget_remove(int backing_fd, const char *ref);

/* Calls fn with the ID of every side object (for fsck's orphan check); fn returns 0 to go on.
 * 0, -ENOENT if there is no links directory, or -errno. */
int linktarget_each(int backing_fd, int (*fn)(void *arg, int links_fd, const char *id),
		    void *arg);

#endif
