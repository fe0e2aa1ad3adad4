/*
 * Encrypted names (name mode 1): each file name is sealed with AES-SIV under a key derived
 * from the volume's name key, with its parent's directory id as associated data, and
 * encoded base64url without padding. Deterministic, so a lookup encrypts the name it is
 * given and opens the backing entry directly. Also user.* xattr names and the hashed form of
 * names too long for the backing filesystem. No FUSE here; layout in docs/FORMAT.md.
 */
#ifndef KEKFS_NAMES_H
#define KEKFS_NAMES_H

#include <stddef.h>
#include <stdint.h>

#define NAME_DIRID_LEN 16
#define NAME_SIV_TAG 16
#define NAME_PLAIN_MAX 255   /* the kernel's limit for one name */
#define NAME_BACKING_MAX 255 /* the backing filesystem's */
/* Encoded form of a 255-byte name: base64url of 16 + 255 bytes, plus the NUL. */
#define NAME_ENC_SIZE 364
/* Longest plaintext whose encoded form still fits the backing filesystem. */
#define NAME_SHORT_MAX 175

#define NAME_DIRID_FILE ".kekfs.dirid"	 /* a directory's id, 16 random bytes */
#define NAME_LONG_PREFIX "kekfs.long."	 /* a long name's object: prefix + hash */
#define NAME_LONG_LEN (11 + 43)		 /* prefix + base64url(BLAKE2b-256) */
#define NAME_TMPDIR_PREFIX ".kekfs.new." /* a directory before its id is written */

/* xattr names: "user." + base64url(SIV(rest)) must fit the 255-byte xattr name limit. */
#define XATTR_NAME_PLAIN_MAX 171

/* The two AES-256-SIV keys derived from the name key, in secure memory. */
struct name_keys;

/* Derives the keys (BLAKE2b-512 keyed by the name key, one label each). NULL: ENOMEM. */
struct name_keys *name_keys_new(const uint8_t name_key[32]);

void name_keys_free(struct name_keys *nk);

/*
 * AES-SIV of one message with one associated-data string: out = tag (16) || ciphertext.
 * key_len 32 selects AES-128-SIV (RFC 5297's vectors), 64 AES-256-SIV. 0 or -EIO.
 */
int name_siv_seal(const uint8_t *key, size_t key_len, const uint8_t *ad, size_t ad_len,
		  const uint8_t *in, size_t len, uint8_t *out);

/* Opens tag || ciphertext (len >= 16) into out (len - 16 bytes). 0 or -EBADMSG. */
__attribute__((warn_unused_result)) int name_siv_open(const uint8_t *key, size_t key_len,
						      const uint8_t *ad, size_t ad_len,
						      const uint8_t *in, size_t len, uint8_t *out);

/*
 * Encrypts one name (1..255 bytes, no '/') for the directory dir_id into out
 * (NAME_ENC_SIZE bytes). Returns the encoded length, -EINVAL or -ENAMETOOLONG.
 */
int name_encrypt(const struct name_keys *nk, const uint8_t dir_id[NAME_DIRID_LEN], const char *name,
		 char *out);

/*
 * Decrypts an encoded name into out (NAME_PLAIN_MAX + 1 bytes). Returns its length, or
 * -EBADMSG if it is not a name kekfs wrote in this directory (tampered, moved, foreign).
 */
__attribute__((warn_unused_result)) int name_decrypt(const struct name_keys *nk,
						     const uint8_t dir_id[NAME_DIRID_LEN],
						     const char *enc, char *out);

/* The backing name of an encoded name longer than NAME_BACKING_MAX (NAME_LONG_LEN + 1). */
void name_long_backing(const char *enc, char *out);

/* 1 if a backing name is a long name's object (its full form is in "." + name). */
int name_is_long(const char *backing);

/* 1 for backing names kekfs keeps to itself: never shown, never looked up. */
int name_is_internal(const char *backing);

/* "user." + sealed rest, into out (256 bytes). -ERANGE if too long, -EINVAL if empty. */
int xattr_name_encrypt(const struct name_keys *nk, const char *name, char *out);

/* The plaintext of an encrypted user.* name into out (256 bytes); -EBADMSG if not ours. */
__attribute__((warn_unused_result)) int xattr_name_decrypt(const struct name_keys *nk,
							   const char *enc, char *out);

#endif
