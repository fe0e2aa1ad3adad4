/* Replacing a small file so that a crash leaves either the old or the new contents. */
#ifndef KEKFS_ATOMIC_FILE_H
#define KEKFS_ATOMIC_FILE_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Unguessable temp file in the same directory, fsync, rename over path, fsync the directory
 * (backing/backing.h: backing_replace). -errno or BACKING_ERR_*.
 */
int atomic_write_file(const char *path, const void *buf, size_t len, mode_t mode);

/*
 * Reads a whole small regular file (at most max bytes) into a malloc'd buffer; never follows a
 * link or blocks on a FIFO inside a volume's .kekfs. -errno or BACKING_ERR_* (TOO_BIG if larger).
 */
int read_small_file(const char *path, size_t max, unsigned char **buf, size_t *len);

/*
 * Writes buf as a new file (0600, never over an existing one or through a link), synced: a
 * backup or a recovery key the person keeps. 0, or -errno with nothing left behind.
 */
int new_file_write(const char *path, const void *buf, size_t len);

#endif
