#include "keyring.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>
#include <xxhash.h>

#include "../crypto/bytes.h"
#include "../crypto/kdf.h"
#include "../crypto/keywrap.h"
#include "../crypto/rsa_wrap.h"

#include "../backing/atomic_file.h"
#include "../backing/backing.h"
#include "../crypto/secmem.h"

/* On-disk layout: see docs/FORMAT.md, "Keyring". */
#define KR_MAGIC "KEKFSKR1"
#define KR_FORMAT 1
#define KR_HEAD_LEN 48
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

static int slot_is_external(int type)
{
	return type == KR_SECRET_PKCS11 || type == KR_SECRET_KMS;
}

struct kr_kek {
	uint32_t version;
	uint8_t state;
	uint64_t created;
	uint64_t destroy_after; /* pending destruction: Unix time it may be destroyed */
	uint8_t wrapped[KEYWRAP_LEN];
	uint8_t *key; /* secure memory; NULL once destroyed */
};

struct keyring {
	pthread_rwlock_t lock; /* rotation changes keks while the daemon looks keys up */
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

static void slot_params_encode(const struct kr_slot *s, uint8_t out[KR_SLOT_PARAMS_LEN])
{
	memset(out, 0, KR_SLOT_PARAMS_LEN);
	out[0] = s->type;
	put_le32(out + 4, s->ext_len);
	put_le64(out + 8, s->ops);
	put_le64(out + 16, s->mem);
	memcpy(out + 24, s->salt, KDF_SALT_LEN);
}

/* AAD of a root slot: magic, volume id and the slot's KDF parameters. */
static size_t slot_aad(const struct keyring *kr, const struct kr_slot *s, uint8_t *aad)
{
	memcpy(aad, KR_MAGIC, 8);
	memcpy(aad + 8, kr->volume_id, KEYRING_VOLUME_ID_LEN);
	slot_params_encode(s, aad + 8 + KEYRING_VOLUME_ID_LEN);
	return 8 + KEYRING_VOLUME_ID_LEN + KR_SLOT_PARAMS_LEN;
}

static size_t kek_aad(const struct keyring *kr, const struct kr_kek *k, uint8_t *aad)
{
	memcpy(aad, "KEKFSKEK", 8);
	memcpy(aad + 8, kr->volume_id, KEYRING_VOLUME_ID_LEN);
	put_le32(aad + 24, k->version);
	put_le64(aad + 28, k->created);
	return 36;
}

/* The key that wraps the keyring key in one slot, derived from the person's secret. */
static int slot_wrapping_key(const struct kr_slot *s, const struct kr_secret *secret,
			     uint8_t out[KDF_KEY_LEN])
{
	if (s->type == KR_SECRET_RSA)
		return rsa_unwrap_key(secret->bytes, secret->len, s->rsa, out) == RSA_OK
			   ? KR_OK
			   : KR_ERR_WRONG_SECRET;
	if (slot_is_external(s->type)) {
		if (!secret->ext ||
		    secret->ext->open(secret->ext, s->spec, s->blob, s->blob_len, out))
			return KR_ERR_EXTERNAL;
		return KR_OK;
	}
	if (s->type == KR_SECRET_KEYFILE) {
		if (secret->len != KDF_KEYFILE_LEN)
			return KR_ERR_WRONG_SECRET;
		kdf_keyfile(secret->bytes, s->salt, out);
		return KR_OK;
	}
	if (s->ops < crypto_pwhash_OPSLIMIT_MIN || s->ops > 64 ||
	    s->mem < crypto_pwhash_MEMLIMIT_MIN || s->mem > (4ULL << 30))
		return KR_ERR_CORRUPT; /* no kekfs writes these: an edited slot */
	return kdf_passphrase((const char *)secret->bytes, secret->len, s->salt, s->ops, s->mem,
			      out) == 0
		   ? KR_OK
		   : KR_ERR_NOMEM;
}

/* Seals a random wrapping key wk for an external slot: spec and blob go into the slot. */
static int external_seal(struct kr_slot *s, const struct kr_secret *secret, uint8_t *wk)
{
	size_t blob_len = KR_BLOB_MAX;

	if (!secret->ext || !secret->spec || strlen(secret->spec) > KR_SPEC_MAX)
		return KR_ERR_EXTERNAL;
	randombytes_buf(wk, KDF_KEY_LEN);
	if (secret->ext->seal(secret->ext, secret->spec, wk, s->blob, &blob_len) != 0)
		return KR_ERR_EXTERNAL;
	strcpy(s->spec, secret->spec);
	s->blob_len = (uint16_t)blob_len;
	s->ext_len = (uint32_t)(4 + strlen(s->spec) + blob_len);
	return KR_OK;
}

static int keyring_add_slot(struct keyring *kr, const struct kr_secret *secret)
{
	struct kr_slot *s = &kr->slots[kr->nslots];
	uint8_t aad[64];
	uint8_t *wk;
	int rc;

	if (kr->nslots >= KEYRING_MAX_SLOTS)
		return KR_ERR_SLOTS_FULL;
	memset(s, 0, sizeof(*s));
	s->type = (uint8_t)secret->type;
	if (s->type == KR_SECRET_PASSPHRASE) {
		s->ops = KDF_ARGON2_OPS;
		s->mem = KDF_ARGON2_MEM;
	}
	randombytes_buf(s->salt, sizeof(s->salt));
	wk = secmem_alloc(KDF_KEY_LEN);
	if (!wk)
		return KR_ERR_NOMEM;
	if (s->type == KR_SECRET_RSA) { /* a random wrapping key, sealed to the public key */
		randombytes_buf(wk, KDF_KEY_LEN);
		rc = rsa_wrap_key(secret->bytes, secret->len, wk, s->rsa) == RSA_OK ? KR_OK
										    : KR_ERR_RSA;
	} else if (slot_is_external(s->type)) {
		rc = external_seal(s, secret, wk);
	} else {
		rc = slot_wrapping_key(s, secret, wk);
	}
	if (rc == KR_OK && key_wrap(wk, aad, slot_aad(kr, s, aad), kr->keyring_key, s->wrapped))
		rc = KR_ERR_IO;
	if (rc == KR_OK)
		kr->nslots++;
	secmem_free(wk);
	return rc;
}

/* Adds KEK version, random or (BYOK) the customer's 32 bytes of material. */
static int keyring_add_kek(struct keyring *kr, uint32_t version, const uint8_t *material)
{
	struct kr_kek *keks = realloc(kr->keks, (kr->nkeks + 1) * sizeof(*keks));
	struct kr_kek *k;
	uint8_t aad[64];

	if (!keks)
		return KR_ERR_NOMEM;
	kr->keks = keks;
	k = &keks[kr->nkeks];
	memset(k, 0, sizeof(*k));
	k->key = secmem_alloc(KEYWRAP_KEY_LEN);
	if (!k->key)
		return KR_ERR_NOMEM;
	if (material)
		memcpy(k->key, material, KEYWRAP_KEY_LEN);
	else
		randombytes_buf(k->key, KEYWRAP_KEY_LEN);
	k->version = version;
	k->state = KEK_ACTIVE;
	k->created = (uint64_t)time(NULL);
	if (key_wrap(kr->keyring_key, aad, kek_aad(kr, k, aad), k->key, k->wrapped) != 0) {
		secmem_free(k->key);
		return KR_ERR_IO;
	}
	kr->nkeks++;
	return KR_OK;
}

static struct keyring *keyring_alloc(const uint8_t volume_id[KEYRING_VOLUME_ID_LEN])
{
	struct keyring *kr = calloc(1, sizeof(*kr));

	if (!kr)
		return NULL;
	memcpy(kr->volume_id, volume_id, KEYRING_VOLUME_ID_LEN);
	pthread_rwlock_init(&kr->lock, NULL);
	kr->keyring_key = secmem_alloc(KEYRING_KEY_LEN);
	if (!kr->keyring_key) {
		free(kr);
		return NULL;
	}
	return kr;
}

int keyring_create(const uint8_t volume_id[KEYRING_VOLUME_ID_LEN], const struct kr_secret *secret,
		   const struct kr_secret *recovery, struct keyring **out)
{
	struct keyring *kr = keyring_alloc(volume_id);
	int rc;

	if (!kr)
		return KR_ERR_NOMEM;
	randombytes_buf(kr->keyring_key, KEYRING_KEY_LEN);
	rc = keyring_add_slot(kr, secret);
	if (rc == KR_OK && recovery)
		rc = keyring_add_slot(kr, recovery);
	if (rc == KR_OK)
		rc = keyring_add_kek(kr, 1, NULL);
	if (rc != KR_OK) {
		keyring_free(kr);
		return rc;
	}
	*out = kr;
	return KR_OK;
}

void keyring_free(struct keyring *kr)
{
	if (!kr)
		return;
	for (size_t i = 0; kr->keks && i < kr->nkeks; i++)
		secmem_free(kr->keks[i].key);
	free(kr->keks);
	secmem_free(kr->keyring_key);
	pthread_rwlock_destroy(&kr->lock);
	free(kr);
}

size_t keyring_kek_count(const struct keyring *kr)
{
	return kr->nkeks;
}

void keyring_kek_info(const struct keyring *kr, size_t i, struct kek_info *info)
{
	const struct kr_kek *k;

	pthread_rwlock_rdlock((pthread_rwlock_t *)&kr->lock);
	k = &kr->keks[i];
	info->version = k->version;
	info->state = k->state;
	info->created = k->created;
	info->destroy_after = k->destroy_after;
	pthread_rwlock_unlock((pthread_rwlock_t *)&kr->lock);
}

uint64_t keyring_generation(const struct keyring *kr)
{
	return kr->generation;
}

/* Keyring lookups take the read lock: the keyring is shared by every daemon thread. */
static void kr_rdlock(const struct keyring *kr)
{
	pthread_rwlock_rdlock((pthread_rwlock_t *)&kr->lock);
}

static void kr_unlock(const struct keyring *kr)
{
	pthread_rwlock_unlock((pthread_rwlock_t *)&kr->lock);
}

static const struct kr_kek *active_kek(const struct keyring *kr)
{
	for (size_t i = 0; i < kr->nkeks; i++)
		if (kr->keks[i].state == KEK_ACTIVE)
			return &kr->keks[i];
	return NULL;
}

uint32_t keyring_active_version(const struct keyring *kr)
{
	const struct kr_kek *k;
	uint32_t v;

	kr_rdlock(kr);
	k = active_kek(kr);
	v = k ? k->version : 0;
	kr_unlock(kr);
	return v;
}

const uint8_t *keyring_active_kek(const struct keyring *kr, uint32_t *version)
{
	const struct kr_kek *k;
	const uint8_t *key = NULL;

	kr_rdlock(kr);
	k = active_kek(kr);
	if (k) {
		*version = k->version;
		key = k->key;
	}
	kr_unlock(kr);
	return key;
}

const uint8_t *keyring_kek(const struct keyring *kr, uint32_t version, int *state)
{
	const uint8_t *key = NULL;
	int found = 0;

	kr_rdlock(kr);
	for (size_t i = 0; i < kr->nkeks && !found; i++) {
		const struct kr_kek *k = &kr->keks[i];

		if (k->version != version)
			continue;
		found = k->state;
		if (k->state == KEK_ACTIVE || k->state == KEK_DECRYPT_ONLY)
			key = k->key;
	}
	kr_unlock(kr);
	if (state)
		*state = found;
	return key;
}

/* MAC over the whole file, keyed by a subkey of the keyring key: catches edits to states. */
static void keyring_mac(const struct keyring *kr, const uint8_t *buf, size_t len,
			uint8_t mac[KR_MAC_LEN])
{
	uint8_t *mk = secmem_alloc(KDF_KEY_LEN);

	if (!mk) {
		memset(mac, 0, KR_MAC_LEN); /* fails verification rather than crash */
		return;
	}
	kdf_subkey(kr->keyring_key, KDF_LABEL_KEYRING_MAC, mk, KDF_KEY_LEN);
	crypto_generichash(mac, KR_MAC_LEN, buf, len, mk, KDF_KEY_LEN);
	secmem_free(mk);
}

static size_t slot_len(int type, size_t ext_len)
{
	return KR_SLOT_LEN + (type == KR_SECRET_RSA ? RSA_WRAP_LEN : 0) +
	       (slot_is_external(type) ? ext_len : 0);
}

static size_t slot_encoded_len(const struct kr_slot *s)
{
	return slot_len(s->type, s->ext_len);
}

/* An external slot's tail: spec length u16, spec, blob length u16, blob. */
static void external_encode(const struct kr_slot *s, uint8_t *p)
{
	size_t n = strlen(s->spec);

	put_le16(p, (uint16_t)n);
	memcpy(p + 2, s->spec, n);
	put_le16(p + 2 + n, s->blob_len);
	memcpy(p + 4 + n, s->blob, s->blob_len);
}

static int external_decode(struct kr_slot *s, const uint8_t *p)
{
	size_t n, blob;

	if (s->ext_len < 4 || s->ext_len > KR_EXT_MAX)
		return KR_ERR_CORRUPT; /* p holds ext_len bytes: not even the two lengths */
	n = get_le16(p);
	if (n > KR_SPEC_MAX || 4 + n > s->ext_len)
		return KR_ERR_CORRUPT;
	blob = get_le16(p + 2 + n);
	if (blob > KR_BLOB_MAX || 4 + n + blob != s->ext_len || memchr(p + 2, 0, n))
		return KR_ERR_CORRUPT;
	memcpy(s->spec, p + 2, n);
	s->spec[n] = '\0';
	memcpy(s->blob, p + 4 + n, blob);
	s->blob_len = (uint16_t)blob;
	return KR_OK;
}

static size_t keyring_encoded_len(const struct keyring *kr)
{
	size_t len = KR_HEAD_LEN + kr->nkeks * KR_KEK_LEN + KR_MAC_LEN + 8;

	for (size_t i = 0; i < kr->nslots; i++)
		len += slot_encoded_len(&kr->slots[i]);
	return len;
}

static void keyring_encode(const struct keyring *kr, uint8_t *buf)
{
	uint8_t *p = buf;
	size_t body;

	memset(buf, 0, keyring_encoded_len(kr));
	memcpy(p, KR_MAGIC, 8);
	put_le16(p + 8, KR_FORMAT);
	put_le16(p + 10, (uint16_t)kr->nslots);
	put_le16(p + 12, (uint16_t)kr->nkeks);
	memcpy(p + 16, kr->volume_id, KEYRING_VOLUME_ID_LEN);
	put_le64(p + 32, kr->generation);
	put_le64(p + 40, kr->rotate_every);
	p += KR_HEAD_LEN;
	for (size_t i = 0; i < kr->nslots; i++) {
		slot_params_encode(&kr->slots[i], p);
		memcpy(p + KR_SLOT_PARAMS_LEN, kr->slots[i].wrapped, KEYWRAP_LEN);
		if (kr->slots[i].type == KR_SECRET_RSA)
			memcpy(p + KR_SLOT_LEN, kr->slots[i].rsa, RSA_WRAP_LEN);
		if (slot_is_external(kr->slots[i].type))
			external_encode(&kr->slots[i], p + KR_SLOT_LEN);
		p += slot_encoded_len(&kr->slots[i]);
	}
	for (size_t i = 0; i < kr->nkeks; i++, p += KR_KEK_LEN) {
		const struct kr_kek *k = &kr->keks[i];

		put_le32(p, k->version);
		p[4] = k->state;
		put_le64(p + 8, k->created);
		memcpy(p + 16, k->wrapped, KEYWRAP_LEN);
		put_le64(p + 88, k->destroy_after);
	}
	body = (size_t)(p - buf);
	keyring_mac(kr, buf, body, p);
	put_le64(p + KR_MAC_LEN, XXH64(buf, body + KR_MAC_LEN, 0));
}

static keyring_saved_fn saved_hook;

void keyring_on_save(keyring_saved_fn fn)
{
	saved_hook = fn;
}

/* Where copy 2 starts in a file whose copies are n bytes long. */
static size_t copy2_offset(size_t n)
{
	return (n + COPY_ALIGN - 1) / COPY_ALIGN * COPY_ALIGN;
}

/* Writes both copies of the keyring as it is (write lock held): one atomic replace. */
static int keyring_write_locked(struct keyring *kr, const char *path)
{
	size_t n = keyring_encoded_len(kr), off = copy2_offset(n);
	uint8_t *buf = calloc(1, off + n);
	int rc;

	if (!buf) {
		errno = ENOMEM;
		return KR_ERR_IO;
	}
	keyring_encode(kr, buf);
	memcpy(buf + off, buf, n);
	rc = atomic_write_file(path, buf, off + n, 0600);
	free(buf);
	if (rc != 0) {
		errno = -rc;
		return KR_ERR_IO;
	}
	kr->copies_rewritten = 1;
	return KR_OK;
}

/* Encodes and writes with the write lock held; the generation moves only if it lands. */
static int keyring_save_locked(struct keyring *kr, const char *path)
{
	int rc;

	kr->generation++;
	rc = keyring_write_locked(kr, path);
	if (rc != KR_OK)
		kr->generation--;
	else if (saved_hook)
		saved_hook(kr->volume_id, kr->generation);
	return rc;
}

/* Takes the write lock and saves one generation later (next), or as it is (a repair). */
static int keyring_save_as(struct keyring *kr, const char *path, int next)
{
	int rc;

	pthread_rwlock_wrlock(&kr->lock);
	rc = next ? keyring_save_locked(kr, path) : keyring_write_locked(kr, path);
	pthread_rwlock_unlock(&kr->lock);
	return rc;
}

int keyring_save(struct keyring *kr, const char *path)
{
	return keyring_save_as(kr, path, 1);
}

int keyring_repair(struct keyring *kr, const char *path)
{
	return keyring_save_as(kr, path, 0);
}

int keyring_save_restored(struct keyring *kr, const char *path, uint64_t newest_seen)
{
	uint64_t old;
	int rc;

	pthread_rwlock_wrlock(&kr->lock);
	old = kr->generation;
	if (newest_seen > kr->generation)
		kr->generation = newest_seen;
	if ((rc = keyring_save_locked(kr, path)) != KR_OK)
		kr->generation = old;
	pthread_rwlock_unlock(&kr->lock);
	return rc;
}

int keyring_export(const struct keyring *kr, uint8_t **buf, size_t *len)
{
	kr_rdlock(kr);
	*len = keyring_encoded_len(kr);
	*buf = malloc(*len);
	if (*buf)
		keyring_encode(kr, *buf);
	kr_unlock(kr);
	return *buf ? KR_OK : KR_ERR_NOMEM;
}

unsigned keyring_bad_copies(const struct keyring *kr, int *rewritten)
{
	if (rewritten)
		*rewritten = kr->copies_rewritten;
	return kr->bad_copies;
}

int keyring_set_rotation_period(struct keyring *kr, const char *path, uint64_t seconds)
{
	uint64_t old;
	int rc;

	pthread_rwlock_wrlock(&kr->lock);
	old = kr->rotate_every;
	kr->rotate_every = seconds;
	if ((rc = keyring_save_locked(kr, path)) != KR_OK)
		kr->rotate_every = old;
	pthread_rwlock_unlock(&kr->lock);
	return rc;
}

uint64_t keyring_rotation_period(const struct keyring *kr)
{
	return kr->rotate_every;
}

uint64_t keyring_rotation_due(const struct keyring *kr)
{
	const struct kr_kek *k;
	uint64_t due = 0;

	kr_rdlock(kr);
	k = active_kek(kr);
	if (k && kr->rotate_every)
		due = k->created + kr->rotate_every;
	kr_unlock(kr);
	return due;
}

size_t keyring_slot_count(const struct keyring *kr)
{
	return kr->nslots;
}

int keyring_slot_type(const struct keyring *kr, size_t i)
{
	return kr->slots[i].type;
}

const char *keyring_kind_name(int type)
{
	switch (type) {
	case KR_SECRET_PASSPHRASE:
		return "passphrase";
	case KR_SECRET_KEYFILE:
		return "key file";
	case KR_SECRET_RSA:
		return "RSA-4096 key pair";
	case KR_SECRET_PKCS11:
		return "PKCS#11 token key";
	case KR_SECRET_KMS:
		return "KMS plugin";
	default:
		return "unknown";
	}
}

const char *keyring_slot_spec(const struct keyring *kr, size_t i)
{
	return slot_is_external(kr->slots[i].type) ? kr->slots[i].spec : "";
}

int keyring_slot_add(struct keyring *kr, const char *path, const struct kr_secret *secret)
{
	int rc;

	if (kr->nslots >= KEYRING_MAX_SLOTS)
		return KR_ERR_SLOTS_FULL;
	pthread_rwlock_wrlock(&kr->lock);
	rc = keyring_add_slot(kr, secret);
	if (rc == KR_OK && (rc = keyring_save_locked(kr, path)) != KR_OK)
		kr->nslots--;
	pthread_rwlock_unlock(&kr->lock);
	return rc;
}

int keyring_slot_remove(struct keyring *kr, const char *path, size_t i)
{
	struct kr_slot saved[KEYRING_MAX_SLOTS];
	int rc;

	if (i >= kr->nslots)
		return KR_ERR_NO_SLOT;
	if (kr->nslots == 1)
		return KR_ERR_LAST_SLOT;
	pthread_rwlock_wrlock(&kr->lock);
	memcpy(saved, kr->slots, sizeof(saved));
	memmove(&kr->slots[i], &kr->slots[i + 1], (kr->nslots - i - 1) * sizeof(kr->slots[0]));
	kr->nslots--;
	rc = keyring_save_locked(kr, path);
	if (rc != KR_OK) {
		memcpy(kr->slots, saved, sizeof(saved));
		kr->nslots++;
	}
	pthread_rwlock_unlock(&kr->lock);
	return rc;
}

int keyring_passwd(struct keyring *kr, const char *path, const struct kr_secret *secret)
{
	struct kr_slot saved;
	size_t i = (size_t)kr->unlocked_slot;
	int rc;

	pthread_rwlock_wrlock(&kr->lock);
	saved = kr->slots[i];
	rc = keyring_add_slot(kr, secret); /* built at the end, then moved into place */
	if (rc == KR_OK) {
		kr->slots[i] = kr->slots[--kr->nslots];
		if ((rc = keyring_save_locked(kr, path)) != KR_OK)
			kr->slots[i] = saved;
	}
	pthread_rwlock_unlock(&kr->lock);
	return rc;
}

/* Drops the newest KEK (a rotation whose save failed) and makes prev active again. */
static void keyring_unrotate(struct keyring *kr, size_t prev)
{
	kr->nkeks--;
	secmem_free(kr->keks[kr->nkeks].key);
	if (prev < kr->nkeks)
		kr->keks[prev].state = KEK_ACTIVE;
}

int keyring_rotate(struct keyring *kr, const char *path, const uint8_t *material, uint32_t *version)
{
	uint32_t next = 0;
	size_t prev = SIZE_MAX;
	int rc;

	pthread_rwlock_wrlock(&kr->lock);
	for (size_t i = 0; i < kr->nkeks; i++) {
		if (kr->keks[i].version > next)
			next = kr->keks[i].version;
		if (kr->keks[i].state == KEK_ACTIVE)
			prev = i;
	}
	rc = kr->nkeks < KR_MAX_KEKS ? keyring_add_kek(kr, next + 1, material) : KR_ERR_CORRUPT;
	if (rc == KR_OK && prev != SIZE_MAX)
		kr->keks[prev].state = KEK_DECRYPT_ONLY;
	/* Saved before anyone can wrap with it: a KEK that is not on disk must never be used. */
	if (rc == KR_OK && (rc = keyring_save_locked(kr, path)) != KR_OK)
		keyring_unrotate(kr, prev);
	pthread_rwlock_unlock(&kr->lock);
	if (rc == KR_OK)
		*version = next + 1;
	return rc;
}

static struct kr_kek *kek_find(struct keyring *kr, uint32_t version)
{
	for (size_t i = 0; i < kr->nkeks; i++)
		if (kr->keks[i].version == version)
			return &kr->keks[i];
	return NULL;
}

/* The state a change leads to from k's state, or a KR_ERR_* why it cannot. */
static int kek_next_state(const struct kr_kek *k, enum kek_change change)
{
	if (k->state == KEK_ACTIVE)
		return KR_ERR_KEK_ACTIVE;
	if (k->state == KEK_DESTROYED)
		return KR_ERR_KEK_DESTROYED;
	switch (change) {
	case KEK_RETIRE:
		return k->state == KEK_DECRYPT_ONLY ? KEK_RETIRED : KR_ERR_KEK_STATE;
	case KEK_RESTORE:
		return k->state != KEK_DECRYPT_ONLY ? KEK_DECRYPT_ONLY : KR_ERR_KEK_STATE;
	case KEK_DESTROY_LATER:
		return KEK_PENDING_DESTRUCTION;
	case KEK_DESTROY_NOW:
		return KEK_DESTROYED;
	}
	return KR_ERR_KEK_STATE;
}

int keyring_kek_change_allowed(const struct keyring *kr, uint32_t version, enum kek_change change)
{
	struct kr_kek *k;
	int next;

	kr_rdlock(kr);
	k = kek_find((struct keyring *)kr, version);
	next = k ? kek_next_state(k, change) : KR_ERR_NO_KEK;
	kr_unlock(kr);
	return next < 0 ? next : KR_OK;
}

int keyring_change_kek(struct keyring *kr, const char *path, uint32_t version,
		       enum kek_change change, uint64_t when)
{
	struct kr_kek *k, saved;
	int next, rc;

	pthread_rwlock_wrlock(&kr->lock);
	k = kek_find(kr, version);
	next = k ? kek_next_state(k, change) : KR_ERR_NO_KEK;
	if (next < 0) {
		pthread_rwlock_unlock(&kr->lock);
		return next;
	}
	saved = *k;
	k->state = (uint8_t)next;
	k->destroy_after = change == KEK_DESTROY_LATER ? when : 0;
	if (next == KEK_DESTROYED)
		sodium_memzero(k->wrapped, sizeof(k->wrapped));
	rc = keyring_save_locked(kr, path);
	if (rc != KR_OK)
		*k = saved;
	else if (next == KEK_DESTROYED && k->key)
		sodium_memzero(k->key,
			       KEYWRAP_KEY_LEN); /* freed with the keyring: no reader races */
	pthread_rwlock_unlock(&kr->lock);
	return rc;
}

int keyring_expire(struct keyring *kr, const char *path, uint64_t now)
{
	int rc = KR_OK;

	for (size_t i = 0; rc == KR_OK && i < keyring_kek_count(kr); i++) {
		struct kek_info k;

		keyring_kek_info(kr, i, &k);
		if (k.state == KEK_PENDING_DESTRUCTION && k.destroy_after <= now)
			rc = keyring_change_kek(kr, path, k.version, KEK_DESTROY_NOW, 0);
	}
	return rc;
}

/* Structural decode of everything but the key material; checks sizes and checksum. */
static int keyring_decode(struct keyring *kr, const uint8_t *buf, size_t len)
{
	const uint8_t *p = buf + KR_HEAD_LEN;

	if (len < KR_HEAD_LEN + 8 || memcmp(buf, KR_MAGIC, 8) != 0 ||
	    get_le64(buf + len - 8) != XXH64(buf, len - 8, 0))
		return KR_ERR_CORRUPT;
	if (get_le16(buf + 8) != KR_FORMAT)
		return KR_ERR_UNSUPPORTED;
	kr->nslots = get_le16(buf + 10);
	kr->nkeks = get_le16(buf + 12);
	kr->generation = get_le64(buf + 32);
	kr->rotate_every = get_le64(buf + 40);
	if (kr->nslots == 0 || kr->nslots > KEYRING_MAX_SLOTS || kr->nkeks == 0)
		return KR_ERR_CORRUPT;
	for (size_t i = 0; i < kr->nslots; i++) {
		struct kr_slot *s = &kr->slots[i];

		if ((size_t)(p - buf) + KR_SLOT_LEN > len)
			return KR_ERR_CORRUPT;
		s->type = p[0];
		s->ext_len = slot_is_external(s->type) ? get_le32(p + 4) : 0;
		if (s->ext_len > KR_EXT_MAX || (size_t)(p - buf) + slot_encoded_len(s) > len)
			return KR_ERR_CORRUPT;
		if (slot_is_external(s->type) && external_decode(s, p + KR_SLOT_LEN) != KR_OK)
			return KR_ERR_CORRUPT;
		s->ops = get_le64(p + 8);
		s->mem = get_le64(p + 16);
		memcpy(s->salt, p + 24, KDF_SALT_LEN);
		memcpy(s->wrapped, p + KR_SLOT_PARAMS_LEN, KEYWRAP_LEN);
		if (s->type == KR_SECRET_RSA)
			memcpy(s->rsa, p + KR_SLOT_LEN, RSA_WRAP_LEN);
		p += slot_encoded_len(s);
	}
	if (len != keyring_encoded_len(kr))
		return KR_ERR_CORRUPT;
	kr->keks = calloc(kr->nkeks, sizeof(*kr->keks));
	if (!kr->keks) {
		kr->nkeks = 0;
		return KR_ERR_NOMEM;
	}
	for (size_t i = 0; i < kr->nkeks; i++, p += KR_KEK_LEN) {
		struct kr_kek *k = &kr->keks[i];

		k->version = get_le32(p);
		k->state = p[4];
		k->created = get_le64(p + 8);
		memcpy(k->wrapped, p + 16, KEYWRAP_LEN);
		k->destroy_after = get_le64(p + 88);
	}
	return KR_OK;
}

/* Opens the keyring key with the first slot of the secret's kind that accepts it. */
static int keyring_unlock_slots(struct keyring *kr, const struct kr_secret *secret)
{
	uint8_t aad[64];
	uint8_t *wk = secmem_alloc(KDF_KEY_LEN);
	int rc = KR_ERR_NO_SLOT;

	if (!wk)
		return KR_ERR_NOMEM;
	for (size_t i = 0; i < kr->nslots; i++) {
		const struct kr_slot *s = &kr->slots[i];
		int r;

		if (s->type != secret->type)
			continue;
		r = slot_wrapping_key(s, secret, wk);
		if (r == KR_OK &&
		    key_unwrap(wk, aad, slot_aad(kr, s, aad), s->wrapped, kr->keyring_key) == 0) {
			kr->unlocked_slot = (int)i;
			rc = KR_OK;
			break;
		}
		rc = (r == KR_OK) ? KR_ERR_WRONG_SECRET : r;
	}
	secmem_free(wk);
	return rc;
}

static int keyring_unwrap_keks(struct keyring *kr)
{
	uint8_t aad[64];

	for (size_t i = 0; i < kr->nkeks; i++) {
		struct kr_kek *k = &kr->keks[i];

		if (k->state == KEK_DESTROYED)
			continue;
		k->key = secmem_alloc(KEYWRAP_KEY_LEN);
		if (!k->key)
			return KR_ERR_NOMEM;
		if (key_unwrap(kr->keyring_key, aad, kek_aad(kr, k, aad), k->wrapped, k->key) != 0)
			return KR_ERR_TAMPERED;
	}
	return KR_OK;
}

/* The length of the keyring copy at p (avail bytes there), or 0 if none passes its checksum. */
static size_t copy_length(const uint8_t *p, size_t avail)
{
	size_t n = KR_HEAD_LEN, nslots;

	if (avail < KR_HEAD_LEN + 8 || memcmp(p, KR_MAGIC, 8) != 0)
		return 0;
	nslots = get_le16(p + 10);
	if (nslots == 0 || nslots > KEYRING_MAX_SLOTS)
		return 0;
	for (size_t i = 0; i < nslots; i++) {
		size_t ext;

		if (n + KR_SLOT_LEN > avail)
			return 0;
		ext = slot_is_external(p[n]) ? get_le32(p + n + 4) : 0;
		if (ext > KR_EXT_MAX)
			return 0;
		n += slot_len(p[n], ext);
	}
	n += (size_t)get_le16(p + 12) * KR_KEK_LEN + KR_MAC_LEN + 8;
	if (n > avail || get_le64(p + n - 8) != XXH64(p, n - 8, 0))
		return 0;
	return n;
}

struct kr_copy {
	size_t off, len;
};

/*
 * Picks the copy to use from a keyring file's bytes: of those that pass their checksum, the
 * one with the highest generation (copy 1 on a tie). *bad says which copies are not exactly
 * that copy, where docs/FORMAT.md puts them; a file of one copy is COPY_SINGLE.
 */
static int copies_pick(const uint8_t *buf, size_t len, struct kr_copy *pick, unsigned *bad)
{
	struct kr_copy c[2] = {{0, copy_length(buf, len)}, {0, 0}};
	size_t off = c[0].len ? copy2_offset(c[0].len) : COPY_ALIGN;
	int i;

	for (; off < len && !c[1].len; off += COPY_ALIGN)
		if ((c[1].len = copy_length(buf + off, len - off)) != 0)
			c[1].off = off;
	if (!c[0].len && !c[1].len)
		return KR_ERR_CORRUPT;
	i = !c[0].len || (c[1].len && get_le64(buf + c[1].off + 32) > get_le64(buf + 32));
	*pick = c[i];
	off = copy2_offset(pick->len);
	*bad = 0;
	if (c[0].len && len == c[0].len)
		*bad = COPY_SINGLE;
	else if (len != off + pick->len || memcmp(buf + off, buf + pick->off, pick->len) != 0)
		*bad |= COPY_2_BAD;
	if (c[0].len != pick->len || memcmp(buf, buf + pick->off, pick->len) != 0)
		*bad |= COPY_1_BAD;
	return KR_OK;
}

int keyring_load_buf(const uint8_t *file, size_t file_len,
		     const uint8_t volume_id[KEYRING_VOLUME_ID_LEN], const struct kr_secret *secret,
		     struct keyring **out)
{
	uint8_t mac[KR_MAC_LEN];
	struct kr_copy c;
	unsigned bad = 0;
	const uint8_t *buf;
	struct keyring *kr = NULL;
	int rc = copies_pick(file, file_len, &c, &bad);

	if (rc != KR_OK)
		return rc;
	buf = file + c.off;
	kr = keyring_alloc(volume_id);
	rc = kr ? keyring_decode(kr, buf, c.len) : KR_ERR_NOMEM;
	if (rc == KR_OK && memcmp(buf + 16, volume_id, KEYRING_VOLUME_ID_LEN) != 0)
		rc = KR_ERR_WRONG_VOLUME;
	if (rc == KR_OK)
		rc = keyring_unlock_slots(kr, secret);
	if (rc == KR_OK) {
		keyring_mac(kr, buf, c.len - KR_MAC_LEN - 8, mac);
		if (sodium_memcmp(mac, buf + c.len - KR_MAC_LEN - 8, KR_MAC_LEN) != 0)
			rc = KR_ERR_TAMPERED;
	}
	if (rc == KR_OK)
		rc = keyring_unwrap_keks(kr);
	if (rc != KR_OK) {
		keyring_free(kr);
		return rc;
	}
	kr->bad_copies = bad;
	*out = kr;
	return KR_OK;
}

/* Reads a keyring file's bytes: KR_OK, or KR_ERR_MISSING, KR_ERR_CORRUPT, KR_ERR_IO (errno). */
static int keyring_file_read(const char *path, uint8_t **buf, size_t *len)
{
	int rc = read_small_file(path, KR_MAX_FILE, buf, len);

	if (rc == -ENOENT)
		return KR_ERR_MISSING;
	if (rc == BACKING_ERR_TOO_BIG)
		return KR_ERR_CORRUPT; /* no keyring is that large: not a keyring */
	if (rc != 0) {
		errno = -rc;
		return KR_ERR_IO;
	}
	return KR_OK;
}

int keyring_load(const char *path, const uint8_t volume_id[KEYRING_VOLUME_ID_LEN],
		 const struct kr_secret *secret, struct keyring **out)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = keyring_file_read(path, &buf, &len);

	if (rc != KR_OK)
		return rc;
	rc = keyring_load_buf(buf, len, volume_id, secret, out);
	free(buf);
	return rc;
}

/* Reads the keyring file at path and picks the copy to use; *buf (to free) holds the bytes. */
static int keyring_file_pick(const char *path, uint8_t **buf, struct kr_copy *c)
{
	size_t len = 0;
	unsigned bad;
	int rc = keyring_file_read(path, buf, &len);

	if (rc == KR_OK && (rc = copies_pick(*buf, len, c, &bad)) != KR_OK) {
		free(*buf);
		*buf = NULL;
	}
	return rc;
}

int keyring_file_generation(const char *path, uint64_t *generation)
{
	uint8_t *buf = NULL;
	struct kr_copy c;
	int rc = keyring_file_pick(path, &buf, &c);

	if (rc == KR_OK)
		*generation = get_le64(buf + c.off + 32);
	free(buf);
	return rc;
}

int keyring_slot_kinds(const char *path, unsigned *kinds)
{
	static const uint8_t any_volume[KEYRING_VOLUME_ID_LEN];
	uint8_t *buf = NULL;
	struct keyring *kr = NULL;
	struct kr_copy c;
	int rc = keyring_file_pick(path, &buf, &c);

	*kinds = 0;
	if (rc == KR_OK)
		kr = keyring_alloc(any_volume);
	if (rc == KR_OK)
		rc = kr ? keyring_decode(kr, buf + c.off, c.len) : KR_ERR_NOMEM;
	for (size_t i = 0; rc == KR_OK && i < kr->nslots; i++)
		*kinds |= 1U << (kr->slots[i].type & 31);
	keyring_free(kr);
	free(buf);
	return rc;
}

void keyring_subkey(const struct keyring *kr, enum kdf_label label, uint8_t out[32])
{
	kdf_subkey(kr->keyring_key, label, out, KDF_KEY_LEN);
}

/* KR_ERR_IO with the reason errno still holds (a full disk, a read-only file system). */
static const char *keyring_io_strerror(void)
{
	static _Thread_local char buf[128];

	if (errno == 0)
		return "the keyring could not be read or written";
	snprintf(buf, sizeof(buf), "the keyring could not be read or written: %s",
		 backing_strerror(-errno));
	return buf;
}

enum kek_state keyring_kek_state(const struct keyring *kr, uint32_t version)
{
	struct kek_info k;

	for (size_t i = 0; i < keyring_kek_count(kr); i++) {
		keyring_kek_info(kr, i, &k);
		if (k.version == version && k.state >= KEK_ACTIVE && k.state <= KEK_DESTROYED)
			return (enum kek_state)k.state;
	}
	return KEK_UNKNOWN;
}

const char *kek_state_name(enum kek_state state)
{
	static const char *const names[] = {
	    [KEK_UNKNOWN] = "unknown",
	    [KEK_ACTIVE] = "active",
	    [KEK_DECRYPT_ONLY] = "decrypt-only",
	    [KEK_RETIRED] = "retired",
	    [KEK_PENDING_DESTRUCTION] = "pending destruction",
	    [KEK_DESTROYED] = "destroyed",
	};

	return (unsigned)state <= KEK_DESTROYED ? names[state] : names[KEK_UNKNOWN];
}

const char *keyring_strerror(int err)
{
	switch (err) {
	case KR_OK:
		return "success";
	case KR_ERR_IO:
		return keyring_io_strerror();
	case KR_ERR_MISSING:
		return "the keyring file does not exist";
	case KR_ERR_CORRUPT:
		return "the keyring file is damaged or truncated (checksum mismatch)";
	case KR_ERR_WRONG_SECRET:
		return "wrong passphrase or key file (or the keyring slot was altered)";
	case KR_ERR_NO_SLOT:
		return "the keyring has no unlock slot of that kind";
	case KR_ERR_TAMPERED:
		return "the keyring was tampered with (authentication failed)";
	case KR_ERR_WRONG_VOLUME:
		return "the keyring belongs to a different volume";
	case KR_ERR_NOMEM:
		return "not enough memory to unlock the keyring";
	case KR_ERR_UNSUPPORTED:
		return "the keyring was written by a newer kekfs";
	case KR_ERR_NO_KEK:
		return "the keyring has no KEK of that version ('kekfs keys list' shows them)";
	case KR_ERR_KEK_ACTIVE:
		return "that is the active KEK: rotate first ('kekfs rotate')";
	case KR_ERR_KEK_DESTROYED:
		return "that KEK is destroyed; its material is gone for good";
	case KR_ERR_KEK_STATE:
		return "that change does not apply to the KEK's present state";
	case KR_ERR_SLOTS_FULL:
		return "the keyring already has the most unlock slots it can hold (8)";
	case KR_ERR_RSA:
		return "invalid key material: the RSA public key cannot be used (4096-bit PEM "
		       "needed)";
	case KR_ERR_EXTERNAL:
		return "the token or KMS program could not seal or open the key";
	case KR_ERR_LAST_SLOT:
		return "that is the keyring's last unlock slot: add another one first";
	default:
		return "unknown keyring error";
	}
}
