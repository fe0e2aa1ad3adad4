/* Turning a person's secret (passphrase or key file) into a 256-bit wrapping key. */
#ifndef KEKFS_KDF_H
#define KEKFS_KDF_H

#include <stddef.h>
#include <stdint.h>

#define KDF_SALT_LEN 16
#define KDF_KEY_LEN 32
#define KDF_KEYFILE_LEN 32

/* Argon2id defaults for new passphrase slots: 3 passes over 64 MiB. */
#define KDF_ARGON2_OPS 3ULL
#define KDF_ARGON2_MEM (64ULL << 20)

/* Argon2id(passphrase, salt); returns 0, or -ENOMEM if the memory cost cannot be met. */
int kdf_passphrase(const char *pass, size_t pass_len, const uint8_t salt[KDF_SALT_LEN],
		   uint64_t ops, uint64_t mem, uint8_t out[KDF_KEY_LEN]);

/* BLAKE2b keyed by the 32-byte key file over a context string and the salt. */
void kdf_keyfile(const uint8_t keyfile[KDF_KEYFILE_LEN], const uint8_t salt[KDF_SALT_LEN],
		 uint8_t out[KDF_KEY_LEN]);

/* The label of the subkey that authenticates the rotate --data journal and the markers. */
#define KDF_JOURNAL_MAC_LABEL "kekfs journal mac v1"

/* Derives a purpose-bound 32-byte subkey (BLAKE2b keyed by key, over label). */
void kdf_subkey(const uint8_t key[KDF_KEY_LEN], const char *label, uint8_t out[KDF_KEY_LEN]);

#endif
