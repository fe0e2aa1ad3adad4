/* Visiting a backing directory tree, depth first, with *at() calls. */
#ifndef KEKFS_WALK_H
#define KEKFS_WALK_H

#include <stdatomic.h>

/* One backing entry met by walk_tree. */
struct walk_entry {
	int dirfd;	  /* its directory: valid only during the call */
	const char *name; /* never "." or ".." */
	int type;	  /* DT_REG, DT_DIR, DT_LNK, or DT_UNKNOWN for anything else */
	unsigned depth;	  /* 0 for entries of the backing directory itself */
};

/* Returns 1 to descend into a directory entry (0 not to; ignored for other types). */
typedef int (*walk_visit_fn)(void *ctx, const struct walk_entry *e);

/*
 * Calls fn for every entry below the backing directory (.kekfs and the internal files of
 * encrypted names included: fn decides), until done or *stop becomes non-zero (stop NULL: to the
 * end).
 */
void walk_tree(int backing_fd, const atomic_int *stop, walk_visit_fn fn, void *ctx);

typedef void (*walk_fn)(void *ctx, int dirfd, const char *name);

/*
 * Calls fn for each regular file below the backing directory (not in .kekfs, and not the
 * directory-id and long-name side files of an encrypted-names volume: encrypted_names),
 * until done or *stop becomes non-zero (stop NULL: to the end). dirfd is valid only during the
 * call.
 */
void walk_regular_files(int backing_fd, int encrypted_names, const atomic_int *stop, walk_fn fn,
			void *ctx);

#endif
