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

/*
 * Every label kekfs derives a key under, in one list (as fscrypt's HKDF_CONTEXT_*): each
 * names one purpose, no two are alike (tests/unit/test_kdf.c), and a label never changes
 * meaning: a new use gets a new label, a changed derivation a new "vN". docs/FORMAT.md
 * gives the strings.
 */
enum kdf_label {
	KDF_LABEL_KEYFILE_SLOT,	   /* key file, salt -> a slot's wrapping key (kdf_keyfile) */
	KDF_LABEL_KEYRING_MAC,	   /* keyring key -> the keyring file's MAC */
	KDF_LABEL_AUDIT_LOG,	   /* keyring key -> the audit log's chained MACs */
	KDF_LABEL_JOURNAL_MAC,	   /* keyring key -> rotate --data jobs' and markers' MACs */
	KDF_LABEL_SHRED_PATH_HASH, /* keyring key -> the path hashes of shred reports */
	KDF_LABEL_NAME_SIV,	   /* name key -> the AES-SIV key of file names (64 bytes) */
	KDF_LABEL_XATTR_NAME_SIV,  /* name key -> the AES-SIV key of xattr names (64 bytes) */
	KDF_LABEL_KEY_CHECK,	   /* a KEK -> its key check value, shown and audited */
	KDF_LABEL_COUNT
};

/* The string of a label ("kekfs keyring mac v1"). */
const char *kdf_label_string(enum kdf_label label);

/* A purpose-bound subkey of out_len bytes (16 to 64): BLAKE2b keyed by key, over the label. */
void kdf_subkey(const uint8_t key[KDF_KEY_LEN], enum kdf_label label, uint8_t *out, size_t out_len);

#endif
