#include "keyring.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "../backing/backing.h"
#include "../crypto/bytes.h"
#include "../crypto/secmem.h"
#include "keyring_priv.h"

/* AAD of a root slot: magic, volume id and the slot's KDF parameters. */
static size_t slot_aad(const struct keyring *kr, const struct kr_slot *s, uint8_t *aad)
{
	memcpy(aad, KR_MAGIC, 8);
	memcpy(aad + 8, kr->volume_id, KEYRING_VOLUME_ID_LEN);
	kr_slot_params_encode(s, aad + 8 + KEYRING_VOLUME_ID_LEN);
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
	k->origin = material ? KEK_ORIGIN_IMPORTED : KEK_ORIGIN_GENERATED;
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

struct keyring *kr_alloc(const uint8_t volume_id[KEYRING_VOLUME_ID_LEN])
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
	struct keyring *kr = kr_alloc(volume_id);
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
	info->origin = (enum kek_origin)k->origin;
	info->has_check = k->key != NULL;
	if (k->key) {
		uint8_t sub[16];

		kdf_subkey(k->key, KDF_LABEL_KEY_CHECK, sub, sizeof(sub));
		memcpy(info->check, sub, KEK_CHECK_LEN);
		sodium_memzero(sub, sizeof(sub));
	}
	pthread_rwlock_unlock((pthread_rwlock_t *)&kr->lock);
}

void keyring_kek_check_hex(const struct keyring *kr, uint32_t version, char out[KEK_CHECK_HEX])
{
	struct kek_info k = {0};

	out[0] = '\0';
	for (size_t i = 0; i < keyring_kek_count(kr); i++) {
		keyring_kek_info(kr, i, &k);
		if (k.version == version && k.has_check)
			sodium_bin2hex(out, KEK_CHECK_HEX, k.check, KEK_CHECK_LEN);
	}
}

uint32_t keyring_find_key(const struct keyring *kr, const uint8_t *material)
{
	uint32_t found = 0;

	pthread_rwlock_rdlock((pthread_rwlock_t *)&kr->lock);
	for (size_t i = 0; i < kr->nkeks && !found; i++)
		if (kr->keks[i].key && sodium_memcmp(kr->keks[i].key, material, KEYWRAP_KEY_LEN) == 0)
			found = kr->keks[i].version;
	pthread_rwlock_unlock((pthread_rwlock_t *)&kr->lock);
	return found;
}

const char *kek_origin_name(enum kek_origin origin)
{
	return origin == KEK_ORIGIN_GENERATED ? "generated"
	       : origin == KEK_ORIGIN_IMPORTED ? "imported"
					       : "origin not recorded";
}

uint64_t keyring_generation(const struct keyring *kr)
{
	return kr->generation;
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

int keyring_set_rotation_period(struct keyring *kr, const char *path, uint64_t seconds)
{
	uint64_t old;
	int rc;

	pthread_rwlock_wrlock(&kr->lock);
	old = kr->rotate_every;
	kr->rotate_every = seconds;
	if ((rc = kr_save_locked(kr, path)) != KR_OK)
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
	if (rc == KR_OK && (rc = kr_save_locked(kr, path)) != KR_OK)
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
	rc = kr_save_locked(kr, path);
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
		if ((rc = kr_save_locked(kr, path)) != KR_OK)
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

	if (material && keyring_find_key(kr, material))
		return KR_ERR_DUPLICATE_KEY;
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
	if (rc == KR_OK && (rc = kr_save_locked(kr, path)) != KR_OK)
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
	rc = kr_save_locked(kr, path);
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

/* Opens the keyring key with the first slot of the secret's kind that accepts it. */
int kr_unlock_slots(struct keyring *kr, const struct kr_secret *secret)
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

int kr_unwrap_keks(struct keyring *kr)
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
	case KR_ERR_DUPLICATE_KEY:
		return "that key material is already one of the keyring's KEKs: import a new key";
	case KR_ERR_LAST_SLOT:
		return "that is the keyring's last unlock slot: add another one first";
	default:
		return "unknown keyring error";
	}
}
