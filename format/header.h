/*
 * The file header at offset 0 of every regular backing file: format, cipher, chunk size,
 * file id and two wrap slots holding the file's DEK. No FUSE here.
 */
#ifndef KEKFS_HEADER_H
#define KEKFS_HEADER_H

#include <stddef.h>
#include <stdint.h>

#include "volume.h"
#include "wrapslot.h"

#define HEADER_LEN 256
/* Byte offsets of the header (docs/FORMAT.md, "File header"). */
#define HEADER_MAGIC_OFF 0 /* "KKFS" */
#define HEADER_MAGIC_LEN 4
#define HEADER_VERSION_OFF 4
#define HEADER_CIPHER_OFF 5
#define HEADER_CHUNK_SHIFT_OFF 6
#define HEADER_FILE_ID_OFF 8
#define HEADER_PREFIX_LEN 24 /* magic, version, cipher, chunk shift, flags, file id */
#define HEADER_FORMAT 1
#define FILE_ID_LEN 16
#define DEK_LEN 32
#define HEADER_AAD_LEN (HEADER_PREFIX_LEN + VOLUME_ID_LEN)
#define HEADER_SLOT_OFF(i) (HEADER_PREFIX_LEN + (i)*WRAP_SLOT_LEN)

enum header_err {
	HDR_OK = 0,
	HDR_ERR_MAGIC = -1,	  /* not a kekfs file header */
	HDR_ERR_FORMAT = -2,	  /* unknown version, or reserved bytes not zero */
	HDR_ERR_PARAMS = -3,	  /* cipher or chunk size differ from the volume */
	HDR_ERR_CORRUPT = -4,	  /* no slot passes its checksum */
	HDR_ERR_KEK_MISSING = -5, /* the slot's KEK version is not in the keyring */
	HDR_ERR_KEK_DESTROYED = -6,
	HDR_ERR_AUTH = -7,     /* tampered, or a header from another volume */
	HDR_ERR_SIZE = -8,     /* the backing size is not one kekfs writes: cut or appended to */
	HDR_ERR_SHREDDED = -9, /* crypto-shredded: flags say so and no slot passes its checksum */
};

/* Header flags byte (offset 7): set only by a shred, together with two random slots. */
#define HEADER_FLAGS_OFF 7

/* 1 if buf starts with the header magic: a kekfs file, whatever state its slots are in. */
int header_is_kekfs(const uint8_t buf[HEADER_LEN]);
#define HEADER_FLAG_SHREDDED 0x01

struct file_header {
	uint8_t cipher;
	uint8_t chunk_shift;
	uint8_t file_id[FILE_ID_LEN];
	uint8_t slots[2][WRAP_SLOT_LEN];
	int current;	      /* index of the slot the DEK came from, -1 if none yet */
	struct wrap_slot cur; /* that slot, decoded */
};

/* A fresh header for a new (or truncated-to-zero) file: new random file id, no slots. */
void header_init(struct file_header *h, const struct volume *v);

void header_encode(const struct file_header *h, uint8_t out[HEADER_LEN]);

/* What a header's wrap slots bind: its prefix and the volume id, so it cannot move between
 * volumes. Returns the length (HEADER_AAD_LEN). */
size_t header_slot_aad(const struct file_header *h, const struct volume *v,
		       uint8_t aad[HEADER_AAD_LEN]);

/* Parses a header and checks it belongs to a file of this volume's cipher and chunk size. */
int header_decode(const uint8_t in[HEADER_LEN], const struct volume *v, struct file_header *h);

/* The KEK version of the newest slot that passes its checksum; HDR_ERR_* if none does. */
int header_current_version(const uint8_t in[HEADER_LEN], uint32_t *version);

/*
 * Makes the bytes a shred writes over a header: the shredded flag, the file id kept, and
 * both wrap slots random (HEADER_FLAGS_OFF..HEADER_SLOT_OFF(2)), into out. The DEK wrapped
 * in the old slots is gone once these are on disk.
 */
#define HEADER_SHRED_LEN (HEADER_SLOT_OFF(2) - HEADER_FLAGS_OFF)
void header_shred_bytes(const uint8_t in[HEADER_LEN], uint8_t out[HEADER_SHRED_LEN]);

const char *header_strerror(int err);

#endif
