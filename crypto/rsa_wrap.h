/* RSA-4096 OAEP (SHA-256) wrapping of a 32-byte key, for unlock slots held by a key pair. */
#ifndef KEKFS_RSA_WRAP_H
#define KEKFS_RSA_WRAP_H

#include <stddef.h>
#include <stdint.h>

#define RSA_WRAP_BITS 4096
#define RSA_WRAP_LEN (RSA_WRAP_BITS / 8)

enum rsa_wrap_err {
	RSA_OK = 0,
	RSA_ERR_PEM = -1,     /* not a PEM key OpenSSL can read */
	RSA_ERR_NOT_RSA = -2, /* a key, but not RSA */
	RSA_ERR_BITS = -3,    /* RSA, but not 4096 bits */
	RSA_ERR_PUBLIC = -4,  /* a public key where the private one is needed */
	RSA_ERR_DECRYPT = -5, /* the private key does not open this slot */
	RSA_ERR_INTERNAL = -6,
};

/* Encrypts key to out (RSA_WRAP_LEN bytes) with a PEM public (or private) key. */
__attribute__((warn_unused_result)) int
rsa_wrap_key(const uint8_t *pem, size_t pem_len, const uint8_t key[32], uint8_t out[RSA_WRAP_LEN]);

/* Decrypts in (RSA_WRAP_LEN bytes) with a PEM private key into key. */
__attribute__((warn_unused_result)) int
rsa_unwrap_key(const uint8_t *pem, size_t pem_len, const uint8_t in[RSA_WRAP_LEN], uint8_t key[32]);

/* Checks that pem is a usable 4096-bit RSA key (a private one if want_private). */
int rsa_key_check(const uint8_t *pem, size_t pem_len, int want_private);

const char *rsa_wrap_strerror(int err);

#endif
