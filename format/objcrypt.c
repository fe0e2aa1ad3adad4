#include "objcrypt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include <sodium.h>

#include "../crypto/aead.h"

#define XATTR_AAD_MAX (16 + FILE_ID_LEN + 256)
#define XATTR_VALUE_MAX 65536

int xattr_is_encrypted(const char *name)
{
	return strncmp(name, "user.", 5) == 0;
}

/* AAD: a label, the file id (or zeros), and the xattr name: values cannot move names. */
static size_t xattr_aad(uint8_t *aad, const uint8_t *file_id, const char *name)
{
	size_t nlen = strnlen(name, 255);

	memcpy(aad, "KEKFS-XATTR-V1\0\0", 16);
	if (file_id)
		memcpy(aad + 16, file_id, FILE_ID_LEN);
	else
		memset(aad + 16, 0, FILE_ID_LEN);
	memcpy(aad + 16 + FILE_ID_LEN, name, nlen);
	return 16 + FILE_ID_LEN + nlen;
}

int xattr_seal(const uint8_t key[32], const uint8_t *file_id, const char *name, const void *val,
	       size_t len, uint8_t *out)
{
	uint8_t aad[XATTR_AAD_MAX];

	return aead_seal(AEAD_XCHACHA20_POLY1305, key, aad, xattr_aad(aad, file_id, name), val, len,
			 out) == 0
		   ? 0
		   : -EIO;
}

int xattr_open(const uint8_t key[32], const uint8_t *file_id, const char *name, const uint8_t *in,
	       size_t in_len, void *out)
{
	uint8_t aad[XATTR_AAD_MAX];

	return aead_open(AEAD_XCHACHA20_POLY1305, key, aad, xattr_aad(aad, file_id, name), in,
			 in_len, out);
}

/* Re-seals one value; pname is the plaintext name its AAD binds (the backing name may differ). */
static int xattr_rekey_one(int fd, const char *name, const char *pname, const uint8_t *old_key,
			   const uint8_t *old_id, const uint8_t *new_key, const uint8_t *new_id,
			   uint8_t *sealed, uint8_t *plain)
{
	ssize_t n = fgetxattr(fd, name, sealed, XATTR_VALUE_MAX);
	int rc;

	if (n < 0)
		return errno == ENODATA ? 0 : -errno;
	if (xattr_open(old_key, old_id, pname, sealed, (size_t)n, plain) != 0)
		return -EBADMSG;
	rc = xattr_seal(new_key, new_id, pname, plain, (size_t)n - OBJ_OVERHEAD, sealed);
	sodium_memzero(plain, (size_t)n);
	if (rc != 0)
		return rc;
	return fsetxattr(fd, name, sealed, (size_t)n, XATTR_REPLACE) == 0 ? 0 : -errno;
}

int xattr_rekey_fd(int fd, const struct name_keys *nk, const uint8_t old_key[32],
		   const uint8_t old_id[FILE_ID_LEN], const uint8_t new_key[32],
		   const uint8_t new_id[FILE_ID_LEN])
{
	char *names = malloc(XATTR_VALUE_MAX), pname[256];
	uint8_t *sealed = malloc(2 * XATTR_VALUE_MAX);
	ssize_t len = (names && sealed) ? flistxattr(fd, names, XATTR_VALUE_MAX) : -1;
	int rc = 0;

	if (!names || !sealed)
		rc = -ENOMEM;
	else if (len < 0)
		rc = errno == ENOTSUP ? 0 : -errno;
	for (ssize_t i = 0; rc == 0 && i < len; i += (ssize_t)strlen(names + i) + 1) {
		if (!xattr_is_encrypted(names + i))
			continue;
		if (!nk)
			snprintf(pname, sizeof(pname), "%s", names + i);
		else if (xattr_name_decrypt(nk, names + i, pname) != 0)
			continue; /* not ours: left as it is, and never shown */
		rc = xattr_rekey_one(fd, names + i, pname, old_key, old_id, new_key, new_id, sealed,
				     sealed + XATTR_VALUE_MAX);
	}
	free(names);
	free(sealed);
	return rc;
}

static size_t symlink_aad(uint8_t aad[32], const uint8_t volume_id[16])
{
	memcpy(aad, "KEKFS-SYMLINK-V1", 16);
	memcpy(aad + 16, volume_id, 16);
	return 32;
}

int symlink_seal_bytes(const uint8_t name_key[32], const uint8_t volume_id[16], const char *target,
		       size_t len, uint8_t *out)
{
	uint8_t aad[32];

	return aead_seal(AEAD_XCHACHA20_POLY1305, name_key, aad, symlink_aad(aad, volume_id),
			 (const uint8_t *)target, len, out) == 0
		   ? 0
		   : -EIO;
}

ssize_t symlink_open_bytes(const uint8_t name_key[32], const uint8_t volume_id[16],
			   const uint8_t *in, size_t in_len, char *out, size_t out_size)
{
	uint8_t aad[32];

	if (in_len < OBJ_OVERHEAD || in_len - OBJ_OVERHEAD >= out_size ||
	    aead_open(AEAD_XCHACHA20_POLY1305, name_key, aad, symlink_aad(aad, volume_id), in,
		      in_len, (uint8_t *)out) != 0)
		return -EBADMSG;
	out[in_len - OBJ_OVERHEAD] = '\0';
	return (ssize_t)(in_len - OBJ_OVERHEAD);
}

int symlink_seal(const uint8_t name_key[32], const uint8_t volume_id[16], const char *target,
		 char *out, size_t out_size)
{
	size_t len = strlen(target);
	uint8_t *sealed;
	int rc;

	if (len > SYMLINK_MAX_TARGET)
		return -ENAMETOOLONG;
	if (out_size <
	    sodium_base64_ENCODED_LEN(len + OBJ_OVERHEAD, sodium_base64_VARIANT_URLSAFE_NO_PADDING))
		return -ENAMETOOLONG;
	sealed = malloc(len + OBJ_OVERHEAD);
	if (!sealed)
		return -ENOMEM;
	rc = symlink_seal_bytes(name_key, volume_id, target, len, sealed);
	if (rc == 0)
		sodium_bin2base64(out, out_size, sealed, len + OBJ_OVERHEAD,
				  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	free(sealed);
	return rc;
}

ssize_t symlink_open(const uint8_t name_key[32], const uint8_t volume_id[16], const char *enc,
		     char *out, size_t out_size)
{
	size_t enc_len = strlen(enc), bin_len = 0;
	uint8_t *bin = malloc(enc_len + 1);
	ssize_t rc = -EBADMSG;

	if (!bin)
		return -ENOMEM;
	if (sodium_base642bin(bin, enc_len, enc, enc_len, NULL, &bin_len, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0)
		rc = symlink_open_bytes(name_key, volume_id, bin, bin_len, out, out_size);
	free(bin);
	return rc;
}

size_t symlink_plain_len(size_t enc_len)
{
	size_t bin = enc_len * 3 / 4;

	return bin > OBJ_OVERHEAD ? bin - OBJ_OVERHEAD : 0;
}
