/*
 * Chunk codec and size arithmetic. A file is a header and then chunks, each stored as
 * nonce || ciphertext || tag with AAD = file id || chunk index || final flag. Every file
 * has at least one chunk, and its last chunk is sealed as final, so dropping chunks from
 * the end is detected. No FUSE here.
 */
#ifndef KEKFS_CHUNK_H
#define KEKFS_CHUNK_H

#include <stddef.h>
#include <stdint.h>

#include "header.h"

struct chunk_geom {
	int cipher;
	uint64_t size;	   /* plaintext bytes per full chunk */
	uint64_t overhead; /* nonce + tag */
};

void geom_init(struct chunk_geom *g, int cipher, unsigned chunk_shift);

/* Chunks a file of plain bytes is stored in: at least one. */
uint64_t geom_nchunks(const struct chunk_geom *g, uint64_t plain);

uint64_t geom_backing_size(const struct chunk_geom *g, uint64_t plain);

/* The largest plaintext a backing file of at most backing bytes holds (0: not even a header
 * and one chunk): the inverse of geom_backing_size, for reporting free space. */
uint64_t geom_plain_capacity(const struct chunk_geom *g, uint64_t backing);

/* Plaintext size of a backing file; -EIO if the size cannot be a valid file. */
int geom_plain_size(const struct chunk_geom *g, uint64_t backing, uint64_t *plain);

/* Offset of chunk idx in the backing file. */
uint64_t geom_chunk_off(const struct chunk_geom *g, uint64_t idx);

/* Seals len (<= g->size) bytes as chunk idx into out (len + overhead bytes). */
int chunk_seal(const struct chunk_geom *g, const uint8_t dek[DEK_LEN],
	       const uint8_t file_id[FILE_ID_LEN], uint64_t idx, int final, const uint8_t *pt,
	       size_t len, uint8_t *out);

/* Opens stored chunk idx (in_len bytes) into pt; -EBADMSG if not authentic. */
__attribute__((warn_unused_result)) int chunk_open(const struct chunk_geom *g,
						   const uint8_t dek[DEK_LEN],
						   const uint8_t file_id[FILE_ID_LEN], uint64_t idx,
						   int final, const uint8_t *in, size_t in_len,
						   uint8_t *pt);

/* 1 if a stored chunk is all zero bytes: a hole, which reads as zeros unless final. */
int chunk_is_hole(const uint8_t *in, size_t len);

#endif
