/* Authenticated encryption of chunks and small objects, with a random nonce per call. */
#ifndef KEKFS_AEAD_H
#define KEKFS_AEAD_H

#include <stddef.h>
#include <stdint.h>

enum aead_cipher {
	AEAD_XCHACHA20_POLY1305 = 1, /* libsodium, 192-bit random nonce */
	AEAD_AES256_GCM = 2,	     /* OpenSSL EVP, 96-bit random nonce */
};

#define AEAD_KEY_LEN 32
#define AEAD_TAG_LEN 16
#define AEAD_MAX_NONCE_LEN 24
#define AEAD_MAX_OVERHEAD (AEAD_MAX_NONCE_LEN + AEAD_TAG_LEN)

/* Returns 1 if the cipher id is one this build knows. */
int aead_cipher_valid(int cipher);

/* Name used on the command line and in status output ("xchacha20-poly1305"). */
const char *aead_cipher_name(int cipher);

/* Parses a command-line cipher name; returns 0 if unknown. */
int aead_cipher_from_name(const char *name);

size_t aead_nonce_len(int cipher);

/* Bytes a sealed message has beyond its plaintext: nonce plus tag. */
size_t aead_overhead(int cipher);

/*
 * Encrypts len bytes of pt into out as nonce || ciphertext || tag, with a fresh random
 * nonce. out must hold len + aead_overhead(cipher) bytes. Returns 0 or -EINVAL/-EIO.
 */
__attribute__((warn_unused_result)) int aead_seal(int cipher, const uint8_t key[AEAD_KEY_LEN],
						  const uint8_t *aad, size_t aad_len,
						  const uint8_t *pt, size_t len, uint8_t *out);

/*
 * Authenticates and decrypts in (nonce || ciphertext || tag, in_len bytes) into pt.
 * Returns 0, or -EBADMSG if the message is not authentic (pt is then wiped).
 */
__attribute__((warn_unused_result)) int aead_open(int cipher, const uint8_t key[AEAD_KEY_LEN],
						  const uint8_t *aad, size_t aad_len,
						  const uint8_t *in, size_t in_len, uint8_t *pt);

#endif
