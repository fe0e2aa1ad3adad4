/*
 * Holes in encrypted files: fallocate's PUNCH_HOLE and ZERO_RANGE, and lseek's SEEK_DATA and
 * SEEK_HOLE. A chunk is a hole when all its stored bytes are zero, which is what the backing
 * file system's holes read as (format/chunk.h); the final chunk is always sealed, so the
 * length of a file stays authenticated. No FUSE here.
 */
#ifndef KEKFS_HOLES_H
#define KEKFS_HOLES_H

#include <stdint.h>

#include "fileio.h"

/* What zeroing plaintext [off, off+len) of a file of size bytes does (clamped to size). */
struct hole_plan {
	uint64_t head_off, head_len; /* zeros written into a partly covered first chunk */
	uint64_t first, count;	     /* whole chunks whose stored bytes are deallocated */
	uint64_t tail_off, tail_len; /* zeros written into a partly covered last chunk, or the
					file's final chunk, which is never deallocated */
};

void hole_plan_make(const struct chunk_geom *g, uint64_t size, uint64_t off, uint64_t len,
		    struct hole_plan *p);

/*
 * Makes plaintext [off, off+len) read as zeros, leaving the size alone: edges re-sealed with
 * zeros as a write does, whole chunks punched out of the backing file; with keep_allocated
 * (ZERO_RANGE) their space is allocated again, so later writes there cannot run out of it.
 * The inode lock must be held exclusively. 0 or -errno (-EOPNOTSUPP: the backing file system
 * cannot punch holes).
 */
int holes_zero(int fd, const struct volume_keys *vk, struct file_crypt *fc, uint64_t off,
	       uint64_t len, int keep_allocated);

/*
 * lseek's SEEK_DATA or SEEK_HOLE (whence) from plaintext off in a file of size bytes, from
 * the backing file's holes: *res, or -ENXIO at or past the end, or -errno.
 */
int holes_seek(int fd, const struct chunk_geom *g, uint64_t size, uint64_t off, int whence,
	       uint64_t *res);

#endif
