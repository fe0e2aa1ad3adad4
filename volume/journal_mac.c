#include "journal_mac.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "../backing/backing.h"
#include "../crypto/kdf.h"
#include "../crypto/secmem.h"

#define MARKER_MAGIC "kekfs-marker 1"
#define MARKER_MAX 256 /* an honest marker is about 140 bytes */

void jmac_new_job(char job[JMAC_JOB_HEX + 1])
{
	uint8_t id[JMAC_JOB_HEX / 2];

	randombytes_buf(id, sizeof(id));
	sodium_bin2hex(job, JMAC_JOB_HEX + 1, id, sizeof(id));
}

int jmac_compute(const struct keyring *kr, const struct volume *vol, const char *kind,
		 const char *job, const void *body, size_t len, uint8_t mac[JMAC_LEN])
{
	uint8_t *key = secmem_alloc(KDF_KEY_LEN);
	crypto_generichash_state st;

	if (!key)
		return -ENOMEM;
	keyring_subkey(kr, KDF_LABEL_JOURNAL_MAC, key);
	crypto_generichash_init(&st, key, KDF_KEY_LEN, JMAC_LEN);
	crypto_generichash_update(&st, (const uint8_t *)kind, strlen(kind) + 1);
	crypto_generichash_update(&st, vol->id, VOLUME_ID_LEN);
	crypto_generichash_update(&st, (const uint8_t *)job, strlen(job) + 1);
	crypto_generichash_update(&st, body, len);
	crypto_generichash_final(&st, mac, JMAC_LEN);
	sodium_memzero(&st, sizeof(st));
	secmem_free(key);
	return 0;
}

int jmac_verify(const struct keyring *kr, const struct volume *vol, const char *kind,
		const char *job, const void *body, size_t len, const char *mac_hex)
{
	uint8_t want[JMAC_LEN], got[JMAC_LEN];
	size_t n = 0;
	int rc = jmac_compute(kr, vol, kind, job, body, len, want);

	if (rc != 0)
		return rc;
	if (strlen(mac_hex) != JMAC_HEX ||
	    sodium_hex2bin(got, sizeof(got), mac_hex, JMAC_HEX, NULL, &n, NULL) != 0 ||
	    n != JMAC_LEN)
		return -EBADMSG;
	return sodium_memcmp(want, got, JMAC_LEN) == 0 ? 0 : -EBADMSG;
}

int marker_write(int backing_fd, const struct volume *vol, const struct keyring *kr,
		 const char *name)
{
	char job[JMAC_JOB_HEX + 1], body[MARKER_MAX], hex[JMAC_HEX + 1];
	uint8_t mac[JMAC_LEN];
	int len, rc, dfd;

	jmac_new_job(job);
	len = snprintf(body, sizeof(body), "%s\nkind %s\njob %s\nkek %u\n", MARKER_MAGIC, name, job,
		       keyring_active_version(kr));
	rc = jmac_compute(kr, vol, name, job, body, (size_t)len, mac);
	if (rc != 0)
		return rc;
	sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
	len += snprintf(body + len, sizeof(body) - (size_t)len, "mac %s\n", hex);
	dfd = backing_dir_open(backing_fd, VOLUME_DIR, 1);
	if (dfd < 0)
		return backing_err_hostile(dfd) ? -EIO : dfd;
	rc = backing_replace(dfd, name, body, (size_t)len, 0600);
	close(dfd);
	return rc;
}

/* Reads .kekfs/name (a regular file, never followed, never waited on): its length, or
 * -ENOENT, -errno or BACKING_ERR_*. */
static ssize_t marker_read(int backing_fd, const char *name, char buf[MARKER_MAX + 1])
{
	int dfd = backing_dir_open(backing_fd, VOLUME_DIR, 1), rc;
	unsigned char *p = NULL;
	size_t n = 0;

	if (dfd < 0)
		return dfd;
	rc = backing_read_small(dfd, name, 0, MARKER_MAX, &p, &n);
	close(dfd);
	if (rc != 0)
		return rc;
	memcpy(buf, p, n + 1);
	free(p);
	return (ssize_t)n;
}

enum marker_state marker_check(int backing_fd, const struct volume *vol, const struct keyring *kr,
			       const char *name, uint32_t *kek)
{
	char buf[MARKER_MAX + 1], kind[32], job[JMAC_JOB_HEX + 2], mac[JMAC_HEX + 2];
	ssize_t n = marker_read(backing_fd, name, buf);
	const char *m = n > 0 ? strstr(buf, "\nmac ") : NULL;
	uint32_t v = 0;
	int ok;

	if (n == -ENOENT)
		return MARKER_ABSENT;
	ok = m && sscanf(buf, MARKER_MAGIC "\nkind %31s\njob %33s\nkek %u\n", kind, job, &v) == 3 &&
	     strcmp(kind, name) == 0 && strlen(job) == JMAC_JOB_HEX &&
	     sscanf(m + 1, "mac %65s\n", mac) == 1 &&
	     (size_t)n == (size_t)(m + 1 - buf) + 4 + strlen(mac) + 1;
	if (!ok || jmac_verify(kr, vol, name, job, buf, (size_t)(m + 1 - buf), mac) != 0)
		return MARKER_UNAUTHENTICATED;
	if (kek)
		*kek = v;
	return MARKER_AUTHENTIC;
}
