#include "unlock.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "../backing/backing.h"
#include "../crypto/secmem.h"
#include "../keyring/audit.h"
#include "../keyring/hoststate.h"
#include "../volume/namekey.h"
#include "../volume/redata.h"
#include "cli.h"

void volume_paths_get(const char *backing, const char *keyring_opt, struct volume_paths *p)
{
	/* a path too long leaves an empty name, which every open refuses */
	if (backing_meta_path(backing, VOLUME_FILE, p->volume, sizeof(p->volume)) != 0)
		p->volume[0] = '\0';
	if (backing_meta_path(backing, NULL, p->audit_dir, sizeof(p->audit_dir)) != 0)
		p->audit_dir[0] = '\0';
	if (keyring_opt)
		snprintf(p->keyring, sizeof(p->keyring), "%s", keyring_opt);
	else if (backing_meta_path(backing, KEYRING_FILE, p->keyring, sizeof(p->keyring)) != 0)
		p->keyring[0] = '\0';
}

/* The secret given fits no slot: say which kinds the keyring has, so the person can choose. */
static int no_slot_error(const char *keyring)
{
	char kinds[256] = "";
	unsigned mask = 0;

	keyring_slot_kinds(keyring, &mask);
	for (int t = KR_SECRET_PASSPHRASE; t <= KR_SECRET_KMS; t++)
		if (mask & 1U << t)
			snprintf(kinds + strlen(kinds), sizeof(kinds) - strlen(kinds), "%s%s",
				 kinds[0] ? ", " : "", keyring_kind_name(t));
	return cli_error(
	    "cannot unlock %s: the keyring has no unlock slot of that kind; it has: %s", keyring,
	    kinds);
}

/* Records generation in the host state; a failure only weakens later checks, so it warns. */
static void generation_record(const uint8_t volume_id[KEYRING_VOLUME_ID_LEN], uint64_t generation,
			      int lower)
{
	char dir[PATH_MAX] = "the host state directory";
	int rc = hoststate_record(volume_id, generation, lower);

	if (rc == 0)
		return;
	hoststate_dir(dir, sizeof(dir));
	fprintf(stderr,
		"kekfs: warning: cannot record keyring generation %llu in %s (%s): this host "
		"will not catch an older copy of the keyring put back\n",
		(unsigned long long)generation, dir, strerror(-rc));
}

/* The host learns every generation a save makes, from this process or its daemon. */
static void generation_saved(const uint8_t volume_id[KEYRING_VOLUME_ID_LEN], uint64_t generation)
{
	generation_record(volume_id, generation, 0);
}

void host_generation_tracking(void)
{
	keyring_on_save(generation_saved);
}

/* Says, and audits, what accepting an older keyring re-opens. */
static void rollback_accepted(const struct volume_paths *p, const struct keyring *kr, uint64_t seen,
			      const char *by, const char *purpose)
{
	unsigned long long gen = keyring_generation(kr);
	char detail[160];
	struct audit_event ev = {.op = "rollback", .detail = detail, .result = "ok"};

	fprintf(stderr,
		"kekfs: warning: --allow-rollback: using keyring generation %llu though %s has "
		"seen generation %llu: KEKs destroyed since are back, so files shredded and sealed "
		"since can be read again from old copies\n",
		gen, by, (unsigned long long)seen);
	snprintf(detail, sizeof(detail),
		 "older keyring accepted (--allow-rollback): generation %llu, %s had seen %llu",
		 gen, by, (unsigned long long)seen);
	audit_event_self(&ev);
	ev.kek = keyring_active_version(kr);
	if (purpose && audit_append(p->audit_dir, kr, &ev) != 0)
		fprintf(stderr, "kekfs: warning: cannot append to the audit log in %s\n",
			p->audit_dir);
}

/*
 * A keyring older than the volume config or this host has seen may be a restored copy that
 * brings destroyed KEKs back: refused unless allowed. The host then records the generation
 * it accepted; with the override, the config too, so that the next unlock is not refused.
 */
static int generation_check(const struct volume_paths *p, struct volume *vol,
			    const struct keyring *kr, int allow, const char *purpose)
{
	uint64_t gen = keyring_generation(kr), host = 0, seen;
	char dir[PATH_MAX] = "the host state directory";
	const char *by;
	int rc = hoststate_seen(vol->id, &host);

	hoststate_dir(dir, sizeof(dir));
	if (rc != 0)
		return cli_error("cannot read the keyring generations this host has seen, in %s "
				 "(%s): it must be your own directory, mode 0700, not a symlink, "
				 "each file one number; fix it and try again",
				 dir, strerror(-rc));
	by = host > vol->generation ? "this host" : "this volume";
	seen = host > vol->generation ? host : vol->generation;
	if (gen < seen && !allow) {
		cli_error(
		    "the keyring %s is older (generation %llu) than %s has seen (generation "
		    "%llu): a restored copy brings back KEKs destroyed since; use the current "
		    "keyring, or give --allow-rollback to accept it",
		    p->keyring, (unsigned long long)gen, by, (unsigned long long)seen);
		return UNLOCK_DAMAGED;
	}
	if (gen < seen)
		rollback_accepted(p, kr, seen, by, purpose);
	if (gen < vol->generation && purpose) {
		vol->generation = gen;
		if ((rc = volume_save(vol, p->volume)) != VOL_OK)
			return cli_error("cannot write %s: %s", p->volume, volume_strerror(rc));
	}
	generation_record(vol->id, gen, gen < seen);
	return 0;
}

/* Says that copy 1 or 2 (bad: COPY_*) of the file at path was bad, and whether it is fixed. */
static void copy_note(const char *path, unsigned bad, int rewritten)
{
	if (bad && rewritten)
		fprintf(stderr, "kekfs: copy %d of %s was damaged: rewritten from the good copy\n",
			bad & COPY_1_BAD ? 1 : 2, path);
	else if (bad)
		fprintf(stderr,
			"kekfs: warning: copy %d of %s is damaged and could not be rewritten (%s): "
			"free space, then run 'kekfs fsck --repair'\n",
			bad & COPY_1_BAD ? 1 : 2, path, strerror(errno));
}

/* Rewrites a keyring or config that had a bad copy from the good one, and says so. */
static void copies_repair(const struct volume_paths *p, struct volume *vol, struct keyring *kr)
{
	unsigned kbad = keyring_bad_copies(kr, NULL) & (COPY_1_BAD | COPY_2_BAD);
	unsigned vbad = vol->bad_copies & (COPY_1_BAD | COPY_2_BAD);

	copy_note(p->keyring, kbad, kbad && keyring_repair(kr, p->keyring) == KR_OK);
	copy_note(p->volume, vbad, vbad && volume_repair(vol) == VOL_OK);
}

int volume_unlock_all(const char *backing, const char *keyring_opt, const struct secret_source *src,
		      const char *purpose, struct volume *vol, struct keyring **kr)
{
	struct audit_event ev = {.op = "unlock", .detail = purpose, .result = "ok"};
	struct volume_paths p;
	struct secret_source chosen = *src;
	struct kr_secret secret;
	char ext_msg[sizeof(((struct kr_external *)0)->msg)] = "";
	int rc;

	volume_paths_get(backing, keyring_opt, &p);
	rc = volume_load(p.volume, vol);
	if (rc == VOL_ERR_MISSING)
		return cli_error(
		    "%s is not a kekfs volume (no %s/%s): create one with 'kekfs init'", backing,
		    VOLUME_DIR, VOLUME_FILE);
	if (rc == VOL_ERR_IO && backing_err_hostile(-errno)) {
		cli_error("%s: %s", p.volume, backing_strerror(-errno));
		return UNLOCK_DAMAGED;
	}
	if (rc != VOL_OK) {
		cli_error("%s: %s", p.volume, volume_strerror(rc));
		return rc == VOL_ERR_CORRUPT ? UNLOCK_DAMAGED : -1;
	}
	if (secret_source_auto(&chosen, p.keyring) != 0 || secret_read(&chosen, 0, &secret) != 0)
		return -1;
	rc = keyring_load(p.keyring, vol->id, &secret, kr);
	if (rc == KR_ERR_EXTERNAL)
		snprintf(ext_msg, sizeof(ext_msg), "%s", secret.ext->msg);
	secret_free(&secret);
	secmem_wipe_stack(); /* what the KDF left of the secret in dead stack frames */
	audit_event_self(&ev);
	if (purpose && (rc == KR_ERR_WRONG_SECRET || rc == KR_ERR_TAMPERED ||
			rc == KR_ERR_NO_SLOT || rc == KR_ERR_EXTERNAL))
		audit_note_failure(p.audit_dir, &ev);
	if (rc == KR_ERR_EXTERNAL)
		return cli_error("cannot unlock %s: %s", p.keyring, ext_msg);
	if (rc == KR_ERR_NO_SLOT) {
		no_slot_error(p.keyring);
		return UNLOCK_WRONG_SECRET;
	}
	if (rc == KR_ERR_MISSING && !keyring_opt)
		return cli_error("no keyring at %s: if it is kept elsewhere, give --keyring PATH",
				 p.keyring);
	if (rc != KR_OK) {
		cli_error("cannot unlock %s: %s", p.keyring, keyring_strerror(rc));
		return rc == KR_ERR_CORRUPT || rc == KR_ERR_TAMPERED ? UNLOCK_DAMAGED
		       : rc == KR_ERR_WRONG_SECRET		     ? UNLOCK_WRONG_SECRET
								     : -1;
	}
	rc = generation_check(&p, vol, *kr, src->allow_rollback, purpose);
	if (rc == 0 && (rc = volume_unlock(vol, *kr)) != VOL_OK) {
		cli_error("%s: %s", p.volume, volume_strerror(rc));
		rc = rc == VOL_ERR_NOMEM ? -1 : UNLOCK_DAMAGED;
	}
	if (rc != 0) { /* the caller gets no keyring to free */
		keyring_free(*kr);
		*kr = NULL;
		return rc;
	}
	if (purpose) /* a read-write open: a bad copy is rewritten now */
		copies_repair(&p, vol, *kr);
	ev.kek = keyring_active_version(*kr);
	if (purpose && audit_append(p.audit_dir, *kr, &ev) != 0)
		fprintf(stderr, "kekfs: warning: cannot append to the audit log in %s\n",
			p.audit_dir);
	return 0;
}

int volume_finish_interrupted(int backing_fd, const struct volume *vol, const struct keyring *kr,
			      const char *backing)
{
	struct volume_paths p;
	struct redata *rd;
	char err[256];
	int rc;

	volume_paths_get(backing, NULL, &p);
	rd = redata_new(&(struct redata_config){
	    .backing_fd = backing_fd, .vol = vol, .kr = kr, .audit_dir = p.audit_dir});
	if (!rd)
		return cli_error("out of memory");
	rc = redata_resume(rd, err, sizeof(err));
	redata_free(rd);
	if (rc < 0)
		return cli_error("%s: %s; check the backing directory, then try again", backing,
				 err);
	return 0;
}
