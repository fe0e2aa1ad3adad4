/* The keyring file (docs/FORMAT.md, "Keyring"): encoding, MAC, two copies, load and save. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <xxhash.h>

#include "../backing/atomic_file.h"
#include "../backing/backing.h"
#include "../crypto/bytes.h"
#include "../crypto/secmem.h"
#include "keyring_priv.h"

void kr_slot_params_encode(const struct kr_slot *s, uint8_t out[KR_SLOT_PARAMS_LEN])
{
	memset(out, 0, KR_SLOT_PARAMS_LEN);
	out[KR_SLOT_TYPE_OFF] = s->type;
	put_le32(out + KR_SLOT_EXT_LEN_OFF, s->ext_len);
	put_le64(out + KR_SLOT_OPS_OFF, s->ops);
	put_le64(out + KR_SLOT_MEM_OFF, s->mem);
	memcpy(out + KR_SLOT_SALT_OFF, s->salt, KDF_SALT_LEN);
}

_Static_assert(KR_ROTATE_EVERY_OFF + 8 == KR_HEAD_LEN, "keyring head");
_Static_assert(KR_SLOT_SALT_OFF + KDF_SALT_LEN == KR_SLOT_PARAMS_LEN &&
		   KR_SLOT_PARAMS_LEN + KEYWRAP_LEN <= KR_SLOT_LEN,
	       "root slot");
_Static_assert(KR_KEK_WRAPPED_OFF + KEYWRAP_LEN == KR_KEK_DESTROY_OFF &&
		   KR_KEK_DESTROY_OFF + 8 == KR_KEK_LEN,
	       "KEK entry");

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
	put_le16(p + KR_FORMAT_OFF, KR_FORMAT);
	put_le16(p + KR_NSLOTS_OFF, (uint16_t)kr->nslots);
	put_le16(p + KR_NKEKS_OFF, (uint16_t)kr->nkeks);
	memcpy(p + KR_VOLUME_ID_OFF, kr->volume_id, KEYRING_VOLUME_ID_LEN);
	put_le64(p + KR_GENERATION_OFF, kr->generation);
	put_le64(p + KR_ROTATE_EVERY_OFF, kr->rotate_every);
	p += KR_HEAD_LEN;
	for (size_t i = 0; i < kr->nslots; i++) {
		kr_slot_params_encode(&kr->slots[i], p);
		memcpy(p + KR_SLOT_PARAMS_LEN, kr->slots[i].wrapped, KEYWRAP_LEN);
		if (kr->slots[i].type == KR_SECRET_RSA)
			memcpy(p + KR_SLOT_LEN, kr->slots[i].rsa, RSA_WRAP_LEN);
		if (slot_is_external(kr->slots[i].type))
			external_encode(&kr->slots[i], p + KR_SLOT_LEN);
		p += slot_encoded_len(&kr->slots[i]);
	}
	for (size_t i = 0; i < kr->nkeks; i++, p += KR_KEK_LEN) {
		const struct kr_kek *k = &kr->keks[i];

		put_le32(p + KR_KEK_VERSION_OFF, k->version);
		p[KR_KEK_STATE_OFF] = k->state;
		p[KR_KEK_ORIGIN_OFF] = k->origin;
		put_le64(p + KR_KEK_CREATED_OFF, k->created);
		memcpy(p + KR_KEK_WRAPPED_OFF, k->wrapped, KEYWRAP_LEN);
		put_le64(p + KR_KEK_DESTROY_OFF, k->destroy_after);
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

int kr_save_locked(struct keyring *kr, const char *path)
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
	rc = next ? kr_save_locked(kr, path) : keyring_write_locked(kr, path);
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
	if ((rc = kr_save_locked(kr, path)) != KR_OK)
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

/* Structural decode of everything but the key material; checks sizes and checksum. */
static int keyring_decode(struct keyring *kr, const uint8_t *buf, size_t len)
{
	const uint8_t *p = buf + KR_HEAD_LEN;

	if (len < KR_HEAD_LEN + 8 || memcmp(buf, KR_MAGIC, 8) != 0 ||
	    get_le64(buf + len - 8) != XXH64(buf, len - 8, 0))
		return KR_ERR_CORRUPT;
	if (get_le16(buf + KR_FORMAT_OFF) != KR_FORMAT)
		return KR_ERR_UNSUPPORTED;
	kr->nslots = get_le16(buf + KR_NSLOTS_OFF);
	kr->nkeks = get_le16(buf + KR_NKEKS_OFF);
	kr->generation = get_le64(buf + KR_GENERATION_OFF);
	kr->rotate_every = get_le64(buf + KR_ROTATE_EVERY_OFF);
	if (kr->nslots == 0 || kr->nslots > KEYRING_MAX_SLOTS || kr->nkeks == 0)
		return KR_ERR_CORRUPT;
	for (size_t i = 0; i < kr->nslots; i++) {
		struct kr_slot *s = &kr->slots[i];

		if ((size_t)(p - buf) + KR_SLOT_LEN > len)
			return KR_ERR_CORRUPT;
		s->type = p[KR_SLOT_TYPE_OFF];
		s->ext_len = slot_is_external(s->type) ? get_le32(p + KR_SLOT_EXT_LEN_OFF) : 0;
		if (s->ext_len > KR_EXT_MAX || (size_t)(p - buf) + slot_encoded_len(s) > len)
			return KR_ERR_CORRUPT;
		if (slot_is_external(s->type) && external_decode(s, p + KR_SLOT_LEN) != KR_OK)
			return KR_ERR_CORRUPT;
		s->ops = get_le64(p + KR_SLOT_OPS_OFF);
		s->mem = get_le64(p + KR_SLOT_MEM_OFF);
		memcpy(s->salt, p + KR_SLOT_SALT_OFF, KDF_SALT_LEN);
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

		k->version = get_le32(p + KR_KEK_VERSION_OFF);
		k->state = p[KR_KEK_STATE_OFF];
		k->origin = p[KR_KEK_ORIGIN_OFF] <= KEK_ORIGIN_IMPORTED ? p[KR_KEK_ORIGIN_OFF]
									: KEK_ORIGIN_UNRECORDED;
		k->created = get_le64(p + KR_KEK_CREATED_OFF);
		memcpy(k->wrapped, p + KR_KEK_WRAPPED_OFF, KEYWRAP_LEN);
		k->destroy_after = get_le64(p + KR_KEK_DESTROY_OFF);
	}
	return KR_OK;
}

/* The length of the keyring copy at p (avail bytes there), or 0 if none passes its checksum. */
static size_t copy_length(const uint8_t *p, size_t avail)
{
	size_t n = KR_HEAD_LEN, nslots;

	if (avail < KR_HEAD_LEN + 8 || memcmp(p, KR_MAGIC, 8) != 0)
		return 0;
	nslots = get_le16(p + KR_NSLOTS_OFF);
	if (nslots == 0 || nslots > KEYRING_MAX_SLOTS)
		return 0;
	for (size_t i = 0; i < nslots; i++) {
		size_t ext;

		if (n + KR_SLOT_LEN > avail)
			return 0;
		ext = slot_is_external(p[n + KR_SLOT_TYPE_OFF])
			  ? get_le32(p + n + KR_SLOT_EXT_LEN_OFF)
			  : 0;
		if (ext > KR_EXT_MAX)
			return 0;
		n += slot_len(p[n], ext);
	}
	n += (size_t)get_le16(p + KR_NKEKS_OFF) * KR_KEK_LEN + KR_MAC_LEN + 8;
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
	i = !c[0].len || (c[1].len && get_le64(buf + c[1].off + KR_GENERATION_OFF) >
					  get_le64(buf + KR_GENERATION_OFF));
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
	kr = kr_alloc(volume_id);
	rc = kr ? keyring_decode(kr, buf, c.len) : KR_ERR_NOMEM;
	if (rc == KR_OK && memcmp(buf + KR_VOLUME_ID_OFF, volume_id, KEYRING_VOLUME_ID_LEN) != 0)
		rc = KR_ERR_WRONG_VOLUME;
	if (rc == KR_OK)
		rc = kr_unlock_slots(kr, secret);
	if (rc == KR_OK) {
		keyring_mac(kr, buf, c.len - KR_MAC_LEN - 8, mac);
		if (sodium_memcmp(mac, buf + c.len - KR_MAC_LEN - 8, KR_MAC_LEN) != 0)
			rc = KR_ERR_TAMPERED;
	}
	if (rc == KR_OK)
		rc = kr_unwrap_keks(kr);
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
		*generation = get_le64(buf + c.off + KR_GENERATION_OFF);
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
		kr = kr_alloc(any_volume);
	if (rc == KR_OK)
		rc = kr ? keyring_decode(kr, buf + c.off, c.len) : KR_ERR_NOMEM;
	for (size_t i = 0; rc == KR_OK && i < kr->nslots; i++)
		*kinds |= 1U << (kr->slots[i].type & 31);
	keyring_free(kr);
	free(buf);
	return rc;
}
