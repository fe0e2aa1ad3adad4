/*
 * Encrypted file contents on an open backing fd: create, load, read, write, truncate.
 * Callers hold the inode's lock (shared for reads, exclusive otherwise). No FUSE here.
 */
#ifndef KEKFS_FILEIO_H
#define KEKFS_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../format/chunk.h"
#include "../format/header.h"
#include "../format/names.h"
#include "../format/volume.h"
#include "filekey.h"
#include "parallel.h"

/* What an open inode needs to read and write its contents. */
struct file_crypt {
	struct file_header hdr;
	uint8_t *dek;	    /* secure memory, NULL when not loaded */
	uint64_t bad_chunk; /* index of the last chunk that failed authentication, for logs */
	int hdr_err;	    /* HDR_* code of the last header failure, for logs */
	int shredded;	    /* the file was crypto-shredded: every use fails with EKEYREVOKED */
	int blank;	    /* 0 bytes on disk, loaded through a read-only fd: empty, no key */
};

/* The keys and geometry every file of a volume shares. */
struct volume_keys {
	const struct volume *vol;
	const struct keyring *kr;
	struct chunk_geom geom;
	const struct name_keys *nk; /* NULL on plaintext-name volumes */
	struct par_pool *pool;	    /* helpers for the chunk crypto of large requests, or NULL */
};

/* Gives a new backing file a fresh file id and DEK (fc holds none yet), and an empty final chunk.
 */
int fileio_create(int fd, const struct volume_keys *vk, struct file_crypt *fc);

/* Reads the header and unwraps the DEK. -EBADMSG (reason in fc->hdr_err) or -errno. */
int fileio_load(int fd, const struct volume_keys *vk, struct file_crypt *fc);

/*
 * A 0-byte backing file is an empty file a crash caught before its header was written (at
 * create, or at a cut to 0): fileio_load gives it its header through a read-write fd, and
 * loads it as blank (empty, no key) through a read-only one. A tail shorter than a chunk's
 * overhead after whole chunks is a growing write a crash cut: it is not counted, and a
 * read-write load trims it. docs/THREAT-MODEL.md, "Crash behaviour".
 */
enum fileio_torn {
	FILEIO_WHOLE = 0, /* a size kekfs writes */
	FILEIO_BLANK = 1, /* 0 bytes */
	FILEIO_TORN = 2,  /* whole chunks, then fewer bytes than a chunk's overhead */
};

/* What a backing size says (enum fileio_torn), and the plaintext size files read with. */
int fileio_torn_state(const struct chunk_geom *g, uint64_t backing, uint64_t *plain);

/* Wipes the DEK. */
void fileio_drop(struct file_crypt *fc);

/* Plaintext size from the backing size; -EIO if impossible. */
int fileio_size(int fd, const struct chunk_geom *g, uint64_t *plain);

/* Returns bytes read, or -errno (-EBADMSG when a chunk does not authenticate). */
ssize_t fileio_read(int fd, const struct volume_keys *vk, struct file_crypt *fc, char *buf,
		    size_t n, uint64_t off);

/* Returns n, or -errno. Writing past the end leaves holes in between. */
ssize_t fileio_write(int fd, const struct volume_keys *vk, struct file_crypt *fc, const char *buf,
		     size_t n, uint64_t off);

/*
 * fileio_write for a write that must end inside the file, done while the size cannot change
 * but other writes may run (the inode lock held shared): returns 0, writing nothing, if it
 * would not end inside the file.
 */
ssize_t fileio_write_inside(int fd, const struct volume_keys *vk, struct file_crypt *fc,
			    const char *buf, size_t n, uint64_t off);

/*
 * Reserves the backing space for the file to grow to plain_end bytes (nothing if it is that
 * long), so that a growing write on a nearly full disk fails with ENOSPC before it changes a
 * byte: a growing pwrite cut short by the disk would leave the old final chunk rewritten
 * (EIO). 0 or -errno; what a failed reservation took is given back.
 */
int fileio_reserve(int fd, const struct chunk_geom *g, uint64_t plain_end);

/* Sets the plaintext size; to 0 re-keys the file (new file id and DEK). */
int fileio_truncate(int fd, const struct volume_keys *vk, struct file_crypt *fc, uint64_t size);

/*
 * Re-wraps the DEK of the file open on fd (read-write) under the active KEK, writing only
 * the spare wrap slot: the current one stays valid until the new one is on disk. Returns
 * 1 if re-wrapped, 0 if already on the active KEK (unless always: fsck rewrites a torn
 * spare slot that way), -EBADMSG (reason in *hdr_err) or -errno.
 * The caller holds the inode lock, so no truncation re-keys the file meanwhile.
 */
int fileio_rewrap(int fd, const struct volume_keys *vk, int always, int *hdr_err);

/*
 * Crypto-shreds the file open on fd (read-write): overwrites both wrap slots with random
 * bytes and sets the header's shredded flag, then fdatasync. The file id and the KEK
 * version its DEK was wrapped with are returned first (for the audit log; kek 0 if no slot
 * was valid). 0 or -errno; -EBADMSG if fd is not a kekfs file.
 */
int fileio_shred(int fd, uint8_t file_id[FILE_ID_LEN], uint32_t *kek);

/* The KEK version of the file's current wrap slot, by checksum alone (no key needed). */
int fileio_kek_version(int fd, uint32_t *version);

#endif
