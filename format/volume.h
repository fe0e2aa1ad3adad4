/*
 * The volume config (BACKING/.kekfs/volume): volume id, data cipher, chunk size, name mode,
 * root directory id and the name key wrapped by a KEK in two slots. No FUSE here.
 */
#ifndef KEKFS_VOLUME_H
#define KEKFS_VOLUME_H

#include <limits.h>
#include <stdint.h>

#include "../backing/backing.h"
#include "copies.h"
#include "wrapslot.h"

#define VOLUME_FILE "volume"
#define KEYRING_FILE "keyring"
#define VOLUME_ID_LEN 16
#define VOLUME_ENCODED_LEN 256
#define VOL_FORMAT 1 /* the config's format version, read and written */
#define VOLUME_AAD_LEN 48	  /* magic .. root dir id: every field a name-key slot binds */
#define VOLUME_MIN_CHUNK_SHIFT 9  /* 512 B */
#define VOLUME_MAX_CHUNK_SHIFT 20 /* 1 MiB */

enum name_mode {
	NAMES_PLAINTEXT = 0,
	NAMES_AES_SIV = 1, /* AES-SIV names, per-directory ids (format/names.h) */
};

enum volume_err {
	VOL_OK = 0,
	VOL_ERR_IO = -1,	  /* see errno; -errno may be a BACKING_ERR_* */
	VOL_ERR_MISSING = -2,	  /* no volume config: not a kekfs volume */
	VOL_ERR_CORRUPT = -3,	  /* damaged or truncated (checksum) */
	VOL_ERR_UNSUPPORTED = -4, /* newer format or unknown cipher */
	VOL_ERR_TAMPERED = -5,	  /* name key does not authenticate: config edited */
	VOL_ERR_KEK = -6,	  /* the KEK of the name key is missing or destroyed */
	VOL_ERR_NOMEM = -7,
};

struct volume {
	uint8_t id[VOLUME_ID_LEN];
	uint8_t root_dir_id[VOLUME_ID_LEN];
	int cipher;
	unsigned chunk_shift;
	int name_mode;
	uint8_t slots[2][WRAP_SLOT_LEN];
	uint8_t *name_key;   /* secure memory, set by volume_create or volume_unlock */
	uint64_t generation; /* the newest keyring generation this volume has seen */
	char path[PATH_MAX]; /* where it was loaded from: where key changes record the generation */
	int current;	     /* the name key's current slot */
	struct wrap_slot cur;
	unsigned bad_copies;  /* COPY_*: the stored copies that were bad at load */
	int copies_rewritten; /* volume_repair wrote both copies again */
};

/*
 * Reads and checks the config at path (no keys needed): the good one of its two copies, with
 * v->bad_copies saying which copy was bad (docs/FORMAT.md, "Volume config").
 */
int volume_load(const char *path, struct volume *v);

/* As volume_load, from a config's bytes in memory (a backup's); v must be zeroed. */
int volume_load_buf(const uint8_t *file, size_t len, struct volume *v);

/* One copy of the config's encoding, as saved: what a keyring backup holds. */
void volume_encode(const struct volume *v, uint8_t out[VOLUME_ENCODED_LEN]);

/* Writes both copies again if one was bad at load (a read-write open). VOL_OK or VOL_ERR_IO. */
int volume_repair(struct volume *v);

/* What the name key's wrap slots bind: every field of the config before them. */
void volume_slot_aad(const struct volume *v, uint8_t out[VOLUME_AAD_LEN]);

/*
 * Puts slot (the name key, sealed again) in the spare slot, records generation if newer, and
 * saves to path; on failure the config in memory is as it was. VOL_OK or VOL_ERR_IO.
 */
int volume_store_slot(struct volume *v, const struct wrap_slot *slot, uint64_t generation,
		      const char *path);

/* Records a newer keyring generation and saves (path NULL: where it was loaded from). */
int volume_store_generation(struct volume *v, uint64_t generation, const char *path);

/*
 * Marker files in .kekfs that make long jobs resumable (a re-wrap, a seal): present while
 * the job is unfinished. They are written with their MAC by volume/journal_mac.c; clear removes
 * one (0 or -errno). Present: 1 only for a regular file.
 */
int volume_marker_clear(int backing_fd, const char *name);
int volume_marker_present(int backing_fd, const char *name);

/* Writes the config atomically, both copies. VOL_ERR_IO with errno on failure. */
int volume_save(const struct volume *v, const char *path);

/* Wipes and frees the name key. */
void volume_clear(struct volume *v);

const char *volume_strerror(int err);

#endif
