#include "kdf.h"

#include <errno.h>
#include <string.h>

#include <sodium.h>

int kdf_passphrase(const char *pass, size_t pass_len, const uint8_t salt[KDF_SALT_LEN],
		   uint64_t ops, uint64_t mem, uint8_t out[KDF_KEY_LEN])
{
	if (crypto_pwhash(out, KDF_KEY_LEN, pass, pass_len, salt, ops, (size_t)mem,
			  crypto_pwhash_ALG_ARGON2ID13) != 0)
		return -ENOMEM;
	return 0;
}

void kdf_keyfile(const uint8_t keyfile[KDF_KEYFILE_LEN], const uint8_t salt[KDF_SALT_LEN],
		 uint8_t out[KDF_KEY_LEN])
{
	const char *context = kdf_label_string(KDF_LABEL_KEYFILE_SLOT);
	crypto_generichash_state st;

	crypto_generichash_init(&st, keyfile, KDF_KEYFILE_LEN, KDF_KEY_LEN);
	crypto_generichash_update(&st, (const uint8_t *)context, strlen(context));
	crypto_generichash_update(&st, salt, KDF_SALT_LEN);
	crypto_generichash_final(&st, out, KDF_KEY_LEN);
	sodium_memzero(&st, sizeof(st));
}

const char *kdf_label_string(enum kdf_label label)
{
	static const char *const labels[KDF_LABEL_COUNT] = {
	    [KDF_LABEL_KEYFILE_SLOT] = "kekfs key-file slot v1",
	    [KDF_LABEL_KEYRING_MAC] = "kekfs keyring mac v1",
	    [KDF_LABEL_AUDIT_LOG] = "kekfs audit log v1",
	    [KDF_LABEL_JOURNAL_MAC] = "kekfs journal mac v1",
	    [KDF_LABEL_SHRED_PATH_HASH] = "kekfs shred path hash v1",
	    [KDF_LABEL_NAME_SIV] = "kekfs name siv v1",
	    [KDF_LABEL_XATTR_NAME_SIV] = "kekfs xattr name siv v1",
	    [KDF_LABEL_KEY_CHECK] = "kekfs key check value v1",
	};

	return (unsigned)label < KDF_LABEL_COUNT ? labels[label] : NULL;
}

void kdf_subkey(const uint8_t key[KDF_KEY_LEN], enum kdf_label label, uint8_t *out, size_t out_len)
{
	const char *s = kdf_label_string(label);

	crypto_generichash(out, out_len, (const uint8_t *)s, strlen(s), key, KDF_KEY_LEN);
}
