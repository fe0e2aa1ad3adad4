/*
 * The keyring's inside, shared by keyring.c (slots, KEKs, their lifecycle) and
 * keyring_file.c (the file: encoding, MAC, two copies, load and save). Nothing else includes
 * it.
 */
#ifndef KEKFS_KEYRING_PRIV_H
#define KEKFS_KEYRING_PRIV_H

#include <pthread.h>
#include <stdint.h>

#include "../crypto/kdf.h"
#include "../crypto/keywrap.h"
#include "../crypto/rsa_wrap.h"
#include "keyring.h"

/* On-disk layout: see docs/FORMAT.md, "Keyring". */
#define KR_MAGIC "KEKFSKR1"
#define KR_HEAD_LEN 48
/* head: magic (8), format u16, slot count u16, KEK count u16, reserved u16, volume id (16),
 * generation u64, rotation period u64 */
#define KR_FORMAT_OFF 8
#define KR_NSLOTS_OFF 10
#define KR_NKEKS_OFF 12
#define KR_VOLUME_ID_OFF 16
#define KR_GENERATION_OFF 32
#define KR_ROTATE_EVERY_OFF 40
/* root slot: type u8, reserved (3), tail length u32, ops u64, mem u64, salt (16), wrapped */
#define KR_SLOT_TYPE_OFF 0
#define KR_SLOT_EXT_LEN_OFF 4
#define KR_SLOT_OPS_OFF 8
#define KR_SLOT_MEM_OFF 16
#define KR_SLOT_SALT_OFF 24
/* KEK: version u32, state u8, origin u8, reserved (2), created u64, wrapped (72),
 * destroy-after u64 */
#define KR_KEK_VERSION_OFF 0
#define KR_KEK_STATE_OFF 4
#define KR_KEK_ORIGIN_OFF 5 /* the first reserved byte: older readers ignore it */
#define KR_KEK_CREATED_OFF 8
#define KR_KEK_WRAPPED_OFF 16
#define KR_KEK_DESTROY_OFF 88
#define KR_SLOT_LEN 128
#define KR_SLOT_PARAMS_LEN 40 /* type, reserved, ops, mem, salt: the part bound as AAD */
#define KR_KEK_LEN 96
#define KR_MAC_LEN 32
#define KR_MAX_KEKS 4096
#define KR_EXT_MAX (2 + KR_SPEC_MAX + 2 + KR_BLOB_MAX) /* an external slot's spec and blob */
#define KR_MAX_COPY                                                                                \
	(KR_HEAD_LEN + KEYRING_MAX_SLOTS * (KR_SLOT_LEN + RSA_WRAP_LEN + KR_EXT_MAX) +             \
	 KR_MAX_KEKS * KR_KEK_LEN + KR_MAC_LEN + 8)
#define COPY_ALIGN 4096 /* copy 2 starts on its own 4 KiB block: a bad sector spares one */
#define KR_MAX_FILE (2 * KR_MAX_COPY + COPY_ALIGN)

struct kr_slot {
	uint8_t type;
	uint64_t ops, mem;
	uint8_t salt[KDF_SALT_LEN];
	uint8_t wrapped[KEYWRAP_LEN];
	uint8_t rsa[RSA_WRAP_LEN]; /* RSA slots: the wrapping key, RSA-OAEP encrypted */
	uint32_t ext_len;	   /* external slots: the encoded size of spec and blob */
	char spec[KR_SPEC_MAX + 1];
	uint8_t blob[KR_BLOB_MAX]; /* the wrapping key, sealed by the token or the KMS */
	uint16_t blob_len;
};

static inline int slot_is_external(int type)
{
	return type == KR_SECRET_PKCS11 || type == KR_SECRET_KMS;
}

struct kr_kek {
	uint32_t version;
	uint8_t state;
	uint8_t origin; /* enum kek_origin */
	uint64_t created;
	uint64_t destroy_after; /* pending destruction: Unix time it may be destroyed */
	uint8_t wrapped[KEYWRAP_LEN];
	uint8_t *key; /* secure memory; NULL once destroyed */
};

struct keyring {
	pthread_rwlock_t lock; /* rotation changes keks while the daemon looks keys up; taken
				* after any kinode lock, never before (docs/ARCHITECTURE.md) */
	int unlocked_slot;     /* the root slot that opened it (for passwd) */
	uint8_t volume_id[KEYRING_VOLUME_ID_LEN];
	uint64_t generation;   /* +1 on every change that is saved */
	uint64_t rotate_every; /* policy: seconds, 0 = never */
	uint8_t *keyring_key;  /* secure memory */
	size_t nslots, nkeks;
	struct kr_slot slots[KEYRING_MAX_SLOTS];
	struct kr_kek *keks;
	unsigned bad_copies;  /* COPY_* as found at load */
	int copies_rewritten; /* a save since the load wrote both copies again */
};

/* Keyring lookups take the read lock: the keyring is shared by every daemon thread. */
static inline void kr_rdlock(const struct keyring *kr)
{
	pthread_rwlock_rdlock((pthread_rwlock_t *)&kr->lock);
}

static inline void kr_unlock(const struct keyring *kr)
{
	pthread_rwlock_unlock((pthread_rwlock_t *)&kr->lock);
}

/* A root slot's type, tail length, KDF parameters and salt: encoded, and bound as AAD. */
void kr_slot_params_encode(const struct kr_slot *s, uint8_t out[KR_SLOT_PARAMS_LEN]);

/* An empty keyring of volume_id, lock ready; NULL without memory (keyring.c). */
struct keyring *kr_alloc(const uint8_t volume_id[KEYRING_VOLUME_ID_LEN]);

/* Opens the keyring key with the first slot of the secret's kind that accepts it. */
int kr_unlock_slots(struct keyring *kr, const struct kr_secret *secret);

/* Unwraps every KEK not destroyed with the keyring key. */
int kr_unwrap_keks(struct keyring *kr);

/* Encodes and writes, write lock held; the generation moves only if it lands (file.c). */
int kr_save_locked(struct keyring *kr, const char *path);

#endif
