#include "volume.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <pthread.h>
#include <stdio.h>

#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <xxhash.h>

#include "../backing/atomic_file.h"
#include "../backing/backing.h"
#include "../crypto/aead.h"
#include "../crypto/bytes.h"
#include "../crypto/secmem.h"

/* Layout: docs/FORMAT.md, "Volume config". */
#define VOL_MAGIC "KEKFSVOL"
#define VOL_FORMAT_OFF 8 /* u16 */
#define VOL_CIPHER_OFF 10
#define VOL_CHUNK_SHIFT_OFF 11
#define VOL_NAME_MODE_OFF 12
#define VOL_RESERVED_OFF 13 /* 3 bytes, zero */
#define VOL_ID_OFF 16
#define VOL_ROOT_ID_OFF 32
#define VOL_SLOTS_OFF 48
#define VOL_GENERATION_OFF 240
#define VOL_CHECKSUM_OFF 248
#define VOL_COPY2_OFF 4096 /* copy 2 on a 4 KiB block of its own: a bad sector spares one */
#define VOL_FILE_LEN (VOL_COPY2_OFF + VOLUME_ENCODED_LEN)

/* The daemon's re-wrap and its control socket may both update and save the config. */
static pthread_mutex_t volume_save_lock = PTHREAD_MUTEX_INITIALIZER;

_Static_assert(sizeof(VOL_MAGIC) - 1 == VOL_FORMAT_OFF, "config magic");
_Static_assert(VOL_RESERVED_OFF + 3 == VOL_ID_OFF && VOL_ID_OFF + VOLUME_ID_LEN == VOL_ROOT_ID_OFF,
	       "config fields in order");
_Static_assert(VOL_ROOT_ID_OFF + VOLUME_ID_LEN == VOLUME_AAD_LEN && VOLUME_AAD_LEN == VOL_SLOTS_OFF,
	       "the name-key slots bind every field before them");
_Static_assert(VOL_SLOTS_OFF + 2 * WRAP_SLOT_LEN <= VOL_GENERATION_OFF &&
		   VOL_GENERATION_OFF + 8 == VOL_CHECKSUM_OFF &&
		   VOL_CHECKSUM_OFF + 8 == VOLUME_ENCODED_LEN,
	       "config tail");

void volume_slot_aad(const struct volume *v, uint8_t out[VOLUME_AAD_LEN])
{
	memset(out, 0, VOLUME_AAD_LEN);
	memcpy(out, VOL_MAGIC, VOL_FORMAT_OFF);
	put_le16(out + VOL_FORMAT_OFF, VOL_FORMAT);
	out[VOL_CIPHER_OFF] = (uint8_t)v->cipher;
	out[VOL_CHUNK_SHIFT_OFF] = (uint8_t)v->chunk_shift;
	out[VOL_NAME_MODE_OFF] = (uint8_t)v->name_mode;
	memcpy(out + VOL_ID_OFF, v->id, VOLUME_ID_LEN);
	memcpy(out + VOL_ROOT_ID_OFF, v->root_dir_id, VOLUME_ID_LEN);
}

void volume_encode(const struct volume *v, uint8_t out[VOLUME_ENCODED_LEN])
{
	volume_slot_aad(v, out);
	memcpy(out + VOL_SLOTS_OFF, v->slots, sizeof(v->slots));
	put_le64(out + VOL_GENERATION_OFF, v->generation);
	put_le64(out + VOL_CHECKSUM_OFF, XXH64(out, VOL_CHECKSUM_OFF, 0));
}

int volume_save(const struct volume *v, const char *path)
{
	uint8_t buf[VOL_FILE_LEN] = {0};
	int rc;

	volume_encode(v, buf);
	memcpy(buf + VOL_COPY2_OFF, buf, VOLUME_ENCODED_LEN);
	rc = atomic_write_file(path, buf, sizeof(buf), 0600);
	if (rc != 0) {
		errno = -rc;
		return VOL_ERR_IO;
	}
	return VOL_OK;
}

static int copy_valid(const uint8_t *c)
{
	return memcmp(c, VOL_MAGIC, VOL_FORMAT_OFF) == 0 &&
	       get_le64(c + VOL_CHECKSUM_OFF) == XXH64(c, VOL_CHECKSUM_OFF, 0);
}

/*
 * The copy of the config file's bytes to use: of the copies that pass their checksum, the one
 * with the highest generation (copy 1 on a tie); NULL if none does. *bad: COPY_* bits for
 * the copies that are not exactly it (a 256-byte file is one copy: COPY_SINGLE).
 */
static const uint8_t *copies_pick(const uint8_t *buf, size_t len, unsigned *bad)
{
	const uint8_t *c1 = len >= VOLUME_ENCODED_LEN && copy_valid(buf) ? buf : NULL;
	const uint8_t *c2 =
	    len >= VOL_FILE_LEN && copy_valid(buf + VOL_COPY2_OFF) ? buf + VOL_COPY2_OFF : NULL;
	const uint8_t *pick = c1;

	if (c2 && (!c1 || get_le64(c2 + VOL_GENERATION_OFF) > get_le64(c1 + VOL_GENERATION_OFF)))
		pick = c2;
	*bad = len == VOLUME_ENCODED_LEN && c1 ? COPY_SINGLE : 0;
	if (*bad == COPY_SINGLE)
		return pick;
	if (pick && (!c1 || memcmp(c1, pick, VOLUME_ENCODED_LEN) != 0))
		*bad |= COPY_1_BAD;
	if (pick && (len != VOL_FILE_LEN || !c2 || memcmp(c2, pick, VOLUME_ENCODED_LEN) != 0))
		*bad |= COPY_2_BAD;
	return pick;
}

int volume_load_buf(const uint8_t *file, size_t len, struct volume *v)
{
	const uint8_t *buf = copies_pick(file, len, &v->bad_copies);
	int rc = VOL_OK;

	if (!buf)
		rc = VOL_ERR_CORRUPT;
	else if (get_le16(buf + VOL_FORMAT_OFF) != VOL_FORMAT ||
		 !aead_cipher_valid(buf[VOL_CIPHER_OFF]) ||
		 buf[VOL_CHUNK_SHIFT_OFF] < VOLUME_MIN_CHUNK_SHIFT ||
		 buf[VOL_CHUNK_SHIFT_OFF] > VOLUME_MAX_CHUNK_SHIFT ||
		 (buf[VOL_NAME_MODE_OFF] != NAMES_PLAINTEXT &&
		  buf[VOL_NAME_MODE_OFF] != NAMES_AES_SIV) ||
		 buf[VOL_RESERVED_OFF] || buf[VOL_RESERVED_OFF + 1] || buf[VOL_RESERVED_OFF + 2])
		rc = VOL_ERR_UNSUPPORTED;
	if (rc == VOL_OK) {
		v->cipher = buf[VOL_CIPHER_OFF];
		v->chunk_shift = buf[VOL_CHUNK_SHIFT_OFF];
		v->name_mode = buf[VOL_NAME_MODE_OFF];
		memcpy(v->id, buf + VOL_ID_OFF, VOLUME_ID_LEN);
		memcpy(v->root_dir_id, buf + VOL_ROOT_ID_OFF, VOLUME_ID_LEN);
		memcpy(v->slots, buf + VOL_SLOTS_OFF, sizeof(v->slots));
		v->generation = get_le64(buf + VOL_GENERATION_OFF);
	}
	return rc;
}

int volume_load(const char *path, struct volume *v)
{
	uint8_t *file = NULL;
	size_t len = 0;
	int rc = read_small_file(path, 2 * VOL_FILE_LEN, &file, &len);

	memset(v, 0, sizeof(*v));
	if (rc == -ENOENT)
		return VOL_ERR_MISSING;
	if (rc == BACKING_ERR_TOO_BIG)
		return VOL_ERR_CORRUPT; /* no config is that large */
	if (rc != 0) {
		errno = -rc;
		return VOL_ERR_IO;
	}
	rc = volume_load_buf(file, len, v);
	if (rc == VOL_OK)
		snprintf(v->path, sizeof(v->path), "%s", path);
	free(file);
	return rc;
}

int volume_repair(struct volume *v)
{
	int rc;

	if (!(v->bad_copies & (COPY_1_BAD | COPY_2_BAD)) || v->copies_rewritten)
		return VOL_OK;
	pthread_mutex_lock(&volume_save_lock);
	rc = volume_save(v, v->path);
	pthread_mutex_unlock(&volume_save_lock);
	if (rc == VOL_OK)
		v->copies_rewritten = 1;
	return rc;
}

int volume_store_slot(struct volume *v, const struct wrap_slot *slot, uint64_t generation,
		      const char *path)
{
	int spare = 1 - v->current, rc;
	uint8_t old[WRAP_SLOT_LEN];

	pthread_mutex_lock(&volume_save_lock);
	memcpy(old, v->slots[spare], WRAP_SLOT_LEN);
	wrap_slot_encode(slot, v->slots[spare]);
	if (generation > v->generation)
		v->generation = generation;
	rc = volume_save(v, path);
	if (rc == VOL_OK) {
		v->current = spare;
		v->cur = *slot;
	} else {
		memcpy(v->slots[spare], old, WRAP_SLOT_LEN);
	}
	pthread_mutex_unlock(&volume_save_lock);
	return rc;
}

int volume_store_generation(struct volume *v, uint64_t generation, const char *path)
{
	int rc = VOL_OK;

	pthread_mutex_lock(&volume_save_lock);
	if (generation > v->generation && (path || v->path[0])) {
		v->generation = generation;
		rc = volume_save(v, path ? path : v->path);
	}
	pthread_mutex_unlock(&volume_save_lock);
	return rc;
}

int volume_marker_clear(int backing_fd, const char *name)
{
	int dirfd = backing_dir_open(backing_fd, VOLUME_DIR, 1), rc;

	if (dirfd < 0)
		return backing_err_hostile(dirfd) ? -EIO : dirfd;
	rc = unlinkat(dirfd, name, 0) == 0 || errno == ENOENT ? 0 : -errno;
	close(dirfd);
	return rc;
}

int volume_marker_present(int backing_fd, const char *name)
{
	int dirfd = backing_dir_open(backing_fd, VOLUME_DIR, 1), rc;

	if (dirfd < 0)
		return 0;
	rc = backing_file_present(dirfd, name);
	close(dirfd);
	return rc == 1;
}

void volume_clear(struct volume *v)
{
	secmem_free(v->name_key);
	v->name_key = NULL;
}

const char *volume_strerror(int err)
{
	switch (err) {
	case VOL_OK:
		return "success";
	case VOL_ERR_IO:
		return "the volume config could not be read or written";
	case VOL_ERR_MISSING:
		return "not a kekfs volume (no .kekfs/volume); create one with 'kekfs init'";
	case VOL_ERR_CORRUPT:
		return "the volume config .kekfs/volume is damaged or truncated";
	case VOL_ERR_UNSUPPORTED:
		return "the volume config uses a format or cipher this kekfs does not support";
	case VOL_ERR_TAMPERED:
		return "the volume config was tampered with (its name key does not authenticate)";
	case VOL_ERR_KEK:
		return "the KEK that wraps the volume's name key is missing or destroyed";
	case VOL_ERR_NOMEM:
		return "not enough secure memory";
	default:
		return "unknown volume error";
	}
}
