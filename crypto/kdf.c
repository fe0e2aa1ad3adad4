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
	static const char context[] = "kekfs key-file slot v1";
	crypto_generichash_state st;

	crypto_generichash_init(&st, keyfile, KDF_KEYFILE_LEN, KDF_KEY_LEN);
	crypto_generichash_update(&st, (const uint8_t *)context, sizeof(context) - 1);
	crypto_generichash_update(&st, salt, KDF_SALT_LEN);
	crypto_generichash_final(&st, out, KDF_KEY_LEN);
	sodium_memzero(&st, sizeof(st));
}

void kdf_subkey(const uint8_t key[KDF_KEY_LEN], const char *label, uint8_t out[KDF_KEY_LEN])
{
	crypto_generichash(out, KDF_KEY_LEN, (const uint8_t *)label, strlen(label), key,
			   KDF_KEY_LEN);
}
