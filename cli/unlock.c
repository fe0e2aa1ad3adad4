#include "unlock.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../crypto/secmem.h"
#include "../fs/backing.h"
#include "../fs/redata.h"
#include "../keyring/audit.h"
#include "cli.h"

void volume_paths_get(const char *backing, const char *keyring_opt, struct volume_paths *p)
{
	snprintf(p->volume, sizeof(p->volume), "%s/%s/%s", backing, VOLUME_DIR, VOLUME_FILE);
	snprintf(p->audit_dir, sizeof(p->audit_dir), "%s/%s", backing, VOLUME_DIR);
	if (keyring_opt)
		snprintf(p->keyring, sizeof(p->keyring), "%s", keyring_opt);
	else
		snprintf(p->keyring, sizeof(p->keyring), "%s/%s/%s", backing, VOLUME_DIR,
			 KEYRING_FILE);
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
	secret_source_auto(&chosen, p.keyring);
	if (secret_read(&chosen, 0, &secret) != 0)
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
	if (rc == KR_ERR_NO_SLOT)
		return no_slot_error(p.keyring);
	if (rc == KR_ERR_MISSING && !keyring_opt)
		return cli_error("no keyring at %s: if it is kept elsewhere, give --keyring PATH",
				 p.keyring);
	if (rc != KR_OK) {
		cli_error("cannot unlock %s: %s", p.keyring, keyring_strerror(rc));
		return rc == KR_ERR_CORRUPT || rc == KR_ERR_TAMPERED ? UNLOCK_DAMAGED : -1;
	}
	if (keyring_generation(*kr) < vol->generation) {
		cli_error("the keyring %s is older (generation %llu) than this volume has seen "
			  "(%llu): it may be a restored copy that brings destroyed keys back; "
			  "use the current keyring",
			  p.keyring, (unsigned long long)keyring_generation(*kr),
			  (unsigned long long)vol->generation);
		return UNLOCK_DAMAGED;
	}
	rc = volume_unlock(vol, *kr);
	if (rc != VOL_OK) {
		cli_error("%s: %s", p.volume, volume_strerror(rc));
		return rc == VOL_ERR_NOMEM ? -1 : UNLOCK_DAMAGED;
	}
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
