#include "journal_mac.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

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
	keyring_subkey(kr, KDF_JOURNAL_MAC_LABEL, key);
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

/* Writes len bytes as .kekfs/name through a fresh random temp name and a rename. */
static int marker_replace(int backing_fd, const char *name, const char *tmp, const char *body,
			  size_t len)
{
	int dfd = openat(backing_fd, VOLUME_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int fd = dfd < 0
		     ? -1
		     : openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	int rc = fd < 0 ? -errno : 0;

	if (rc == 0 && (write(fd, body, len) != (ssize_t)len || fsync(fd) != 0))
		rc = errno ? -errno : -EIO;
	if (fd >= 0)
		close(fd);
	if (rc == 0 && renameat(dfd, tmp, dfd, name) != 0)
		rc = -errno;
	if (fd >= 0 && rc != 0)
		unlinkat(dfd, tmp, 0);
	if (rc == 0 && fsync(dfd) != 0)
		rc = -errno;
	if (dfd >= 0)
		close(dfd);
	return rc;
}

int marker_write(int backing_fd, const struct volume *vol, const struct keyring *kr,
		 const char *name)
{
	char job[JMAC_JOB_HEX + 1], body[MARKER_MAX], hex[JMAC_HEX + 1], tmp[96];
	uint8_t mac[JMAC_LEN];
	int len, rc;

	jmac_new_job(job);
	len = snprintf(body, sizeof(body), "%s\nkind %s\njob %s\nkek %u\n", MARKER_MAGIC, name, job,
		       keyring_active_version(kr));
	rc = jmac_compute(kr, vol, name, job, body, (size_t)len, mac);
	if (rc != 0)
		return rc;
	sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
	len += snprintf(body + len, sizeof(body) - (size_t)len, "mac %s\n", hex);
	snprintf(tmp, sizeof(tmp), ".%s.%s", name, job); /* the job id is random */
	return marker_replace(backing_fd, name, tmp, body, (size_t)len);
}

/* Reads .kekfs/name (a regular file, never followed, never waited on) into buf. */
static ssize_t marker_read(int backing_fd, const char *name, char buf[MARKER_MAX + 1])
{
	int dfd = openat(backing_fd, VOLUME_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int fd = dfd < 0 ? -1 : openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	ssize_t n = fd < 0 ? -errno : 0;
	struct stat st;

	if (n == 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MARKER_MAX))
		n = -EINVAL;
	if (n == 0 && (n = read(fd, buf, MARKER_MAX)) < 0)
		n = -errno;
	buf[n > 0 ? n : 0] = '\0';
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	return n;
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
