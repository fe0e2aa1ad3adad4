/* kekfs keys backup FILE and keys restore FILE: the keyring and config, kept apart. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "../backing/atomic_file.h"
#include "../crypto/bytes.h"
#include "../crypto/secmem.h"
#include "../keyring/audit.h"
#include "../keyring/hoststate.h"
#include "../volume/census.h"
#include "cli.h"
#include "cmd_keys.h"
#include "mounts.h"
#include "target.h"
#include "unlock.h"

/* A keyring backup: docs/FORMAT.md, "Keyring backup". */
#define BACKUP_MAGIC "KEKFSBK1"
#define BACKUP_HEAD 40
#define BACKUP_MAX (BACKUP_HEAD + VOLUME_ENCODED_LEN + (1 << 20) + 8)

/* The backup of an unlocked volume: head, config, keyring, checksum (malloc'd). */
static uint8_t *backup_encode(const struct volume *vol, const struct keyring *kr, size_t *len)
{
	uint8_t *ring = NULL, *buf = NULL;
	size_t n = 0;

	if (keyring_export(kr, &ring, &n) != KR_OK)
		return NULL;
	*len = BACKUP_HEAD + VOLUME_ENCODED_LEN + n + 8;
	buf = calloc(1, *len);
	if (buf) {
		memcpy(buf, BACKUP_MAGIC, 8);
		memcpy(buf + 8, vol->id, VOLUME_ID_LEN);
		put_le64(buf + 24, keyring_generation(kr));
		put_le32(buf + 32, (uint32_t)n);
		volume_encode(vol, buf + BACKUP_HEAD);
		memcpy(buf + BACKUP_HEAD + VOLUME_ENCODED_LEN, ring, n);
		put_le64(buf + *len - 8, XXH64(buf, *len - 8, 0));
	}
	free(ring);
	return buf;
}

/* keys backup FILE TARGET: reads the keyring and config as they are; writes nothing else. */
int keys_backup(const char *file, struct keys_opts *o)
{
	struct kekfs_mount m;
	struct volume vol = {0};
	struct keyring *kr = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = -1;

	if (access(file, F_OK) == 0)
		return cli_fail("%s exists: give a new file for the backup", file);
	if (kekfs_mount_find(o->target, 0, &m)) /* online: the keyring is replaced atomically */
		snprintf(o->target, sizeof(o->target), "%s", m.backing);
	if (volume_unlock_all(o->target, o->keyring, &o->src, NULL, &vol, &kr) != 0)
		return 1;
	buf = backup_encode(&vol, kr, &len);
	if (!buf)
		cli_error("out of memory");
	else if ((rc = new_file_write(file, buf, len)) != 0)
		cli_error("cannot write the backup %s: %s", file, strerror(-rc));
	else
		printf("keyring backup of %s written to %s (generation %llu): it opens with the "
		       "secrets of the keyring's %zu unlock slot%s as they are now; keep it apart "
		       "from the backing directory\n",
		       o->target, file, (unsigned long long)keyring_generation(kr),
		       keyring_slot_count(kr), keyring_slot_count(kr) == 1 ? "" : "s");
	free(buf);
	keyring_free(kr);
	volume_clear(&vol);
	return rc == 0 ? 0 : 1;
}

/* A backup file read and checked: its config and keyring bytes point into buf. */
struct backup {
	uint8_t *buf;
	const uint8_t *config, *ring;
	size_t ring_len;
	uint64_t generation;
	struct volume vol; /* its config, loaded */
};

static int backup_read(const char *file, struct backup *b)
{
	size_t len = 0, n;
	int rc = read_small_file(file, BACKUP_MAX, &b->buf, &len);

	if (rc != 0)
		return cli_error("cannot read the backup %s: %s", file,
				 strerror(rc == -EFBIG ? EINVAL : -rc));
	n = len >= BACKUP_HEAD ? get_le32(b->buf + 32) : 0;
	if (len < BACKUP_HEAD + 8 || memcmp(b->buf, BACKUP_MAGIC, 8) != 0 ||
	    len != BACKUP_HEAD + VOLUME_ENCODED_LEN + n + 8 ||
	    get_le64(b->buf + len - 8) != XXH64(b->buf, len - 8, 0))
		return cli_error("%s is not a kekfs keyring backup, or it is damaged", file);
	b->config = b->buf + BACKUP_HEAD;
	b->ring = b->config + VOLUME_ENCODED_LEN;
	b->ring_len = n;
	b->generation = get_le64(b->buf + 24);
	if (volume_load_buf(b->config, VOLUME_ENCODED_LEN, &b->vol) != VOL_OK ||
	    memcmp(b->vol.id, b->buf + 8, VOLUME_ID_LEN) != 0)
		return cli_error("%s is not a kekfs keyring backup, or it is damaged", file);
	return 0;
}

/* Unlocks the backup's keyring with the person's secret; NULL after a message. */
static struct keyring *backup_unlock(const char *file, const struct backup *b,
				     const struct keys_opts *o, const char *keyring_path)
{
	struct secret_source chosen = o->src;
	struct kr_secret secret;
	struct keyring *kr = NULL;
	int rc;

	secret_source_auto(&chosen, keyring_path);
	if (secret_read(&chosen, 0, &secret) != 0)
		return NULL;
	rc = keyring_load_buf(b->ring, b->ring_len, b->vol.id, &secret, &kr);
	secret_free(&secret);
	secmem_wipe_stack();
	if (rc != KR_OK)
		cli_error("cannot unlock the backup %s: %s", file, keyring_strerror(rc));
	return rc == KR_OK ? kr : NULL;
}

/*
 * The config to restore with: the volume's own when it is readable and its name key opens
 * with the backup's keyring, else the backup's (the same volume, the same name key, wrapped
 * by a KEK the backup has). *known: the newest keyring generation the volume records.
 */
static int restore_config(const char *file, const struct volume_paths *p, struct backup *b,
			  const struct keyring *kr, struct volume *vol, uint64_t *known)
{
	uint64_t gen = 0;
	int rc = volume_load(p->volume, vol);

	*known = rc == VOL_OK ? vol->generation : 0;
	if (keyring_file_generation(p->keyring, &gen) == KR_OK && gen > *known)
		*known = gen;
	if (hoststate_seen(b->vol.id, &gen) == 0 && gen > *known)
		*known = gen;
	if (rc == VOL_OK && memcmp(vol->id, b->vol.id, VOLUME_ID_LEN) != 0)
		return cli_error("the backup %s belongs to another volume than %s", file,
				 p->volume);
	if (rc != VOL_OK && rc != VOL_ERR_MISSING && rc != VOL_ERR_CORRUPT)
		return cli_error("%s: %s", p->volume, volume_strerror(rc));
	if (rc == VOL_OK && volume_unlock(vol, kr) == VOL_OK)
		return 0;
	*vol = b->vol;
	rc = volume_unlock(vol, kr);
	return rc == VOL_OK ? 0 : cli_error("the backup %s: %s", file, volume_strerror(rc));
}

/* Saves the restored keyring past every generation the volume knows, then the config. */
static int restore_write(const struct volume_paths *p, struct volume *vol, struct keyring *kr,
			 uint64_t known, const char *detail)
{
	struct audit_event ev = {.op = "keyring-restore", .detail = detail, .result = "ok"};
	int rc = keyring_save_restored(kr, p->keyring, known);

	if (rc != KR_OK)
		return cli_error("cannot write the keyring %s: %s; nothing changed", p->keyring,
				 keyring_strerror(rc));
	vol->generation = keyring_generation(kr);
	if (volume_save(vol, p->volume) != VOL_OK)
		return cli_error("the keyring is restored, but %s could not be written: %s; run "
				 "'kekfs keys restore' again",
				 p->volume, strerror(errno));
	audit_event_self(&ev);
	ev.kek = keyring_active_version(kr);
	if (audit_append(p->audit_dir, kr, &ev) != 0)
		fprintf(stderr, "kekfs: warning: cannot append to the audit log in %s\n",
			p->audit_dir);
	return 0;
}

/* "3 files cannot be opened with it, e.g. /a, /b" into out. */
static void unopenable_describe(const struct census *c, char *out, size_t size)
{
	size_t n = (size_t)snprintf(out, size, "%llu file%s cannot be opened with it",
				    (unsigned long long)c->files, c->files == 1 ? "" : "s");

	for (unsigned i = 0; i < c->nexamples && n < size; i++)
		n += (size_t)snprintf(out + n, size - n, "%s%s", i ? ", " : ", e.g. ",
				      c->examples[i]);
}

/*
 * Restores the unlocked backup kr over the volume at o->target, after counting the files it
 * cannot open; refused without --older when the backup is older than the volume's keyring.
 */
static int restore_checked(const char *file, const struct keys_opts *o,
			   const struct volume_paths *p, const struct backup *b, struct keyring *kr,
			   struct volume *vol, uint64_t known)
{
	char what[8192], detail[128];
	struct census c;
	int fd = open(o->target, O_PATH | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return cli_error("cannot open %s: %s", o->target, strerror(errno));
	census_unopenable(fd, vol, kr, &c);
	close(fd);
	unopenable_describe(&c, what, sizeof(what));
	if (b->generation < known && !o->older)
		return cli_error("the backup %s is older (generation %llu) than this volume's "
				 "keyring (%llu): %s; restore it anyway with --older",
				 file, (unsigned long long)b->generation, (unsigned long long)known,
				 what);
	snprintf(detail, sizeof(detail), "generation %llu over %llu, %llu files unreadable",
		 (unsigned long long)b->generation, (unsigned long long)known,
		 (unsigned long long)c.files);
	if (restore_write(p, vol, kr, known, detail) != 0)
		return -1;
	printf("keyring restored from %s (generation %llu, saved as %llu): %s\n", file,
	       (unsigned long long)b->generation, (unsigned long long)keyring_generation(kr), what);
	return 0;
}

/* keys restore FILE TARGET [--older]: after a lost or damaged keyring, or on purpose. */
int keys_restore(const char *file, struct keys_opts *o)
{
	struct backup b = {0};
	struct volume vol = {0};
	struct volume_paths p;
	struct keyring *kr = NULL;
	struct kekfs_mount m;
	uint64_t known = 0;
	int rc = -1;

	if (kekfs_mount_find(o->target, 0, &m) || kekfs_mount_find(o->target, 1, &m))
		return cli_error("%s is mounted on %s: unmount it first, the daemon holds the "
				 "keyring",
				 m.backing, m.mountpoint),
		       1;
	if (target_lock(o->target, VOLUME_LOCK_EXCLUSIVE, "keys restore", "unmount it first") != 0)
		return 1;
	volume_paths_get(o->target, o->keyring, &p);
	if (backup_read(file, &b) == 0 && (kr = backup_unlock(file, &b, o, p.keyring)) &&
	    restore_config(file, &p, &b, kr, &vol, &known) == 0)
		rc = restore_checked(file, o, &p, &b, kr, &vol, known);
	keyring_free(kr);
	volume_clear(&vol);
	free(b.buf);
	return rc == 0 ? 0 : 1;
}
