/*
 * The keyring: a random keyring key wrapped once per root slot (passphrase, key file),
 * and the versioned KEKs wrapped by that keyring key. Knows nothing of files or FUSE.
 */
#ifndef KEKFS_KEYRING_H
#define KEKFS_KEYRING_H

#include <stddef.h>
#include <stdint.h>

#include "../crypto/kdf.h"
#include "../format/copies.h"

#define KEYRING_VOLUME_ID_LEN 16
#define KEYRING_KEY_LEN 32
#define KEYRING_MAX_SLOTS 8
#define KR_FORMAT 1 /* the keyring file's format version, read and written */

enum keyring_err {
	KR_OK = 0,
	KR_ERR_IO = -1,		    /* see errno */
	KR_ERR_MISSING = -2,	    /* no keyring file at that path */
	KR_ERR_CORRUPT = -3,	    /* not a keyring, truncated or damaged (checksum) */
	KR_ERR_WRONG_SECRET = -4,   /* no slot of this kind opens with the given secret */
	KR_ERR_NO_SLOT = -5,	    /* the keyring has no slot of the kind offered */
	KR_ERR_TAMPERED = -6,	    /* a slot opened but the keyring's MAC does not verify */
	KR_ERR_WRONG_VOLUME = -7,   /* the keyring belongs to another volume */
	KR_ERR_NOMEM = -8,	    /* secure memory or Argon2 memory could not be had */
	KR_ERR_UNSUPPORTED = -9,    /* a newer keyring format */
	KR_ERR_NO_KEK = -10,	    /* no KEK of that version */
	KR_ERR_KEK_ACTIVE = -11,    /* the active KEK cannot be retired or destroyed */
	KR_ERR_KEK_DESTROYED = -12, /* a destroyed KEK stays destroyed */
	KR_ERR_KEK_STATE = -13,
	KR_ERR_SLOTS_FULL = -14,
	KR_ERR_LAST_SLOT = -15,
	KR_ERR_RSA = -16,      /* the change does not apply to the KEK's present state */
	KR_ERR_EXTERNAL = -17, /* a token or KMS program failed: its kr_external says why */
	KR_ERR_DUPLICATE_KEY = -18, /* imported key material equals a KEK the keyring has */
};

/* Where a KEK version came from, recorded with it (0 in keyrings older than the record). */
enum kek_origin { KEK_ORIGIN_UNRECORDED = 0, KEK_ORIGIN_GENERATED = 1, KEK_ORIGIN_IMPORTED = 2 };

/* Key check values: 8 bytes, the start of the KEK's KDF_LABEL_KEY_CHECK subkey. */
#define KEK_CHECK_LEN 8

enum kr_secret_type {
	KR_SECRET_PASSPHRASE = 1,
	KR_SECRET_KEYFILE = 2,
	KR_SECRET_RSA = 3, /* PEM text: the public key to add a slot, the private key to unlock */
	KR_SECRET_PKCS11 = 4, /* an AES key in a PKCS#11 token (the PIN is in kr_external) */
	KR_SECRET_KMS = 5,    /* a KMS plugin program */
};

#define KR_SPEC_MAX 2048 /* an external slot's spec: where the key is, never a secret */
#define KR_BLOB_MAX 6144 /* what the token or KMS returned when it sealed the slot's key */

/*
 * A root slot whose 32-byte wrapping key is sealed by something kekfs cannot read: an AES
 * key in a PKCS#11 token, or a KMS behind a plugin program. The slot stores the spec (the
 * token and key labels, or the program) and the sealed blob. Each call returns 0, or -1
 * with msg set to one line saying what is wrong.
 */
struct kr_external {
	int (*seal)(struct kr_external *x, const char *spec, const uint8_t key[32], uint8_t *blob,
		    size_t *blob_len);
	int (*open)(struct kr_external *x, const char *spec, const uint8_t *blob, size_t blob_len,
		    uint8_t key[32]);
	const uint8_t *pin; /* PKCS#11: the PIN (secure memory), NULL for a KMS */
	size_t pin_len;
	int timeout_s; /* KMS: how long the program may take */
	char msg[512];
	/* The program or module local configuration names: a slot naming another is refused
	 * (the keyring is read before its MAC can be checked). NULL: the slot's own. */
	const char *only;
};

/* A root secret as the person gave it; bytes live in secure memory owned by the caller. */
struct kr_secret {
	int type;
	const uint8_t *bytes;
	size_t len;
	const char *spec;	 /* external slots: the spec of a slot being added */
	struct kr_external *ext; /* external slots: how to seal and open */
};

enum kek_state {
	KEK_UNKNOWN = 0, /* not in the keyring */
	KEK_ACTIVE = 1,
	KEK_DECRYPT_ONLY = 2,
	KEK_RETIRED = 3,
	KEK_PENDING_DESTRUCTION = 4,
	KEK_DESTROYED = 5,
};

struct keyring;

/* A new keyring for volume_id: a slot for secret (and one for recovery, if not NULL), KEK v1. */
int keyring_create(const uint8_t volume_id[KEYRING_VOLUME_ID_LEN], const struct kr_secret *secret,
		   const struct kr_secret *recovery, struct keyring **out);

/* Reads and unlocks the keyring at path with secret; checks it belongs to volume_id. */
int keyring_load(const char *path, const uint8_t volume_id[KEYRING_VOLUME_ID_LEN],
		 const struct kr_secret *secret, struct keyring **out);

/*
 * Writes the keyring atomically (0600), one generation later: two copies in the one file,
 * the second on a 4 KiB block of its own (docs/FORMAT.md). KR_OK, or KR_ERR_IO (errno).
 */
int keyring_save(struct keyring *kr, const char *path);

/* As keyring_load, from the bytes of a keyring file (a backup's, say) already in memory. */
int keyring_load_buf(const uint8_t *file, size_t file_len,
		     const uint8_t volume_id[KEYRING_VOLUME_ID_LEN], const struct kr_secret *secret,
		     struct keyring **out);

/*
 * Which stored copies (format/copies.h: COPY_*) were bad when the keyring was loaded: the
 * good one was used. *rewritten (if not NULL): both copies have been written since.
 */
unsigned keyring_bad_copies(const struct keyring *kr, int *rewritten);

/* Rewrites both copies from the loaded one, same generation: after a bad copy was found. */
int keyring_repair(struct keyring *kr, const char *path);

/* The generation of the keyring file at path, read without unlocking it: KR_OK or why not. */
int keyring_file_generation(const char *path, uint64_t *generation);

/* One copy of the keyring's encoding, as saved (malloc'd): what a backup holds. */
int keyring_export(const struct keyring *kr, uint8_t **buf, size_t *len);

/*
 * Saves a keyring restored from a backup one generation past both its own and newest_seen
 * (the newest generation the volume knows), so that the volume accepts it from now on.
 */
int keyring_save_restored(struct keyring *kr, const char *path, uint64_t newest_seen);

/*
 * Called after every save that landed, with the write lock held: how the host learns each new
 * generation (see hoststate.h), wherever the save came from (a command, the daemon).
 */
typedef void (*keyring_saved_fn)(const uint8_t volume_id[KEYRING_VOLUME_ID_LEN],
				 uint64_t generation);
void keyring_on_save(keyring_saved_fn fn);

/*
 * Adds KEK vN+1 as the active key (the previous one becomes decrypt-only) and saves the
 * keyring to path, atomically for every reader: if the save fails nothing changed. The
 * new KEK is random, or the 32 bytes of material a customer brings (BYOK).
 */
int keyring_rotate(struct keyring *kr, const char *path, const uint8_t *material,
		   uint32_t *version);

struct kek_info {
	uint32_t version;
	int state;
	uint64_t created;	/* Unix time */
	uint64_t destroy_after; /* Unix time, for KEK_PENDING_DESTRUCTION */
	enum kek_origin origin;
	int has_check;			 /* 0 once the KEK is destroyed */
	uint8_t check[KEK_CHECK_LEN]; /* a value a customer can compute from their own copy */
};

/* What a person asks of an old KEK version. */
enum kek_change {
	KEK_RETIRE,	   /* decrypt-only -> retired: refused for unwrapping, reversible */
	KEK_RESTORE,	   /* retired or pending destruction -> decrypt-only */
	KEK_DESTROY_LATER, /* -> pending destruction until `when`, refused meanwhile */
	KEK_DESTROY_NOW,   /* -> destroyed: material erased, a tombstone stays */
};

/*
 * Applies a change to KEK version and saves the keyring to path; if the save fails nothing
 * changed. Material is erased only once the keyring without it is on disk.
 */
int keyring_change_kek(struct keyring *kr, const char *path, uint32_t version,
		       enum kek_change change, uint64_t when);

/* KR_OK if change applies to KEK version now, else the KR_ERR_* that says why not. */
int keyring_kek_change_allowed(const struct keyring *kr, uint32_t version, enum kek_change change);

/* Destroys every KEK pending destruction whose date has come, and saves if any did. */
int keyring_expire(struct keyring *kr, const char *path, uint64_t now);

/* Unlock slots, like LUKS key slots: each wraps the keyring key under one root secret. */
size_t keyring_slot_count(const struct keyring *kr);
int keyring_slot_type(const struct keyring *kr, size_t i); /* KR_SECRET_* */

/* A person's name for a kind of slot (KR_SECRET_*): "key file", "PKCS#11 token key"... */
const char *keyring_kind_name(int type);

/* The spec of external slot i (token, key, program: no secret), or "" for other kinds. */
const char *keyring_slot_spec(const struct keyring *kr, size_t i);

/*
 * The kinds of slot the keyring at path has, without unlocking it: bit (1 << KR_SECRET_*)
 * per kind. KR_OK, or why the file cannot be read (KR_ERR_MISSING, KR_ERR_CORRUPT, ...).
 */
int keyring_slot_kinds(const char *path, unsigned *kinds);

/* Adds a slot for secret and saves; if the save fails nothing changed. */
int keyring_slot_add(struct keyring *kr, const char *path, const struct kr_secret *secret);

/* Removes slot i and saves; the last slot cannot go (KR_ERR_LAST_SLOT). */
int keyring_slot_remove(struct keyring *kr, const char *path, size_t i);

/* Re-wraps the keyring key in the slot that unlocked it under a new secret, and saves. */
int keyring_passwd(struct keyring *kr, const char *path, const struct kr_secret *secret);

/* Rotation policy: rotate when the active KEK is older than seconds (0: never). Saved. */
int keyring_set_rotation_period(struct keyring *kr, const char *path, uint64_t seconds);
uint64_t keyring_rotation_period(const struct keyring *kr);

/* When the active KEK is due for rotation (Unix time), or 0 without a policy. */
uint64_t keyring_rotation_due(const struct keyring *kr);

size_t keyring_kek_count(const struct keyring *kr);

/* Describes the i-th KEK (0 <= i < keyring_kek_count), oldest first. */
void keyring_kek_info(const struct keyring *kr, size_t i, struct kek_info *info);

/* The state of KEK version in kr; KEK_UNKNOWN if the keyring has no such version. */
enum kek_state keyring_kek_state(const struct keyring *kr, uint32_t version);

/* A KEK state as a word for people ("retired", "pending destruction"; "unknown"). */
const char *kek_state_name(enum kek_state state);

/* "generated", "imported", or "origin not recorded". */
const char *kek_origin_name(enum kek_origin origin);

/* The key check value of KEK version as 16 hex digits (out: KEK_CHECK_HEX bytes), so that a
 * customer can match kekfs's versions to their own key records; "" once destroyed. */
#define KEK_CHECK_HEX (2 * KEK_CHECK_LEN + 1)
void keyring_kek_check_hex(const struct keyring *kr, uint32_t version, char out[KEK_CHECK_HEX]);

/* The version of the KEK whose key equals material (BYOK imports the same key once), or 0. */
uint32_t keyring_find_key(const struct keyring *kr, const uint8_t *material);

/* Incremented by every save: lets a volume notice a keyring restored from an old copy. */
uint64_t keyring_generation(const struct keyring *kr);

void keyring_free(struct keyring *kr);

uint32_t keyring_active_version(const struct keyring *kr);

/* The active KEK and its version, read together: what every new wrap must use. */
const uint8_t *keyring_active_kek(const struct keyring *kr, uint32_t *version);

/*
 * The KEK of a version, or NULL when the keyring does not have it usable; *state (if not
 * NULL) then says why: 0 unknown, or the key's state (retired, destroyed, ...).
 */
const uint8_t *keyring_kek(const struct keyring *kr, uint32_t version, int *state);

/* A 32-byte key for one purpose (label), derived from the keyring key. */
void keyring_subkey(const struct keyring *kr, enum kdf_label label, uint8_t out[32]);

/* One sentence for a person, naming what is wrong. */
const char *keyring_strerror(int err);

#endif
