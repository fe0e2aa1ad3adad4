#include "keywrap.h"

#include "aead.h"

/* Key wraps always use XChaCha20-Poly1305, whatever the volume's data cipher: no nonce limit. */
int key_wrap(const uint8_t kek[KEYWRAP_KEY_LEN], const uint8_t *aad, size_t aad_len,
	     const uint8_t key[KEYWRAP_KEY_LEN], uint8_t out[KEYWRAP_LEN])
{
	return aead_seal(AEAD_XCHACHA20_POLY1305, kek, aad, aad_len, key, KEYWRAP_KEY_LEN, out);
}

int key_unwrap(const uint8_t kek[KEYWRAP_KEY_LEN], const uint8_t *aad, size_t aad_len,
	       const uint8_t in[KEYWRAP_LEN], uint8_t key[KEYWRAP_KEY_LEN])
{
	return aead_open(AEAD_XCHACHA20_POLY1305, kek, aad, aad_len, in, KEYWRAP_LEN, key);
}
