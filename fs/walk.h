/* Visiting every regular file of a backing directory, depth first, with *at() calls. */
#ifndef KEKFS_WALK_H
#define KEKFS_WALK_H

typedef void (*walk_fn)(void *ctx, int dirfd, const char *name);

/*
 * Calls fn for each regular file below the backing directory (not in .kekfs, and not the
 * directory-id and long-name side files of an encrypted-names volume: encrypted_names),
 * until done or *stop becomes non-zero. dirfd is valid only during the call.
 */
void walk_regular_files(int backing_fd, int encrypted_names, volatile int *stop, walk_fn fn,
			void *ctx);

#endif
