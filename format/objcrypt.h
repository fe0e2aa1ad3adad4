/*
 * Small objects that are not file contents: symlink targets (under the volume's name key)
 * and user.* xattr values (under the file's DEK, or the name key for non-regular files).
 * Always XChaCha20-Poly1305: random 192-bit nonces, no limit on how many. No FUSE here.
 */
#ifndef KEKFS_OBJCRYPT_H
#define KEKFS_OBJCRYPT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "header.h"
#include "names.h"

#define OBJ_OVERHEAD 40
/* Longest symlink target that still fits the backing filesystem once sealed and encoded. */
#define SYMLINK_MAX_TARGET (((4095 * 3) / 4) - OBJ_OVERHEAD)

/* 1 for names whose values kekfs encrypts (user.*); others pass through. */
int xattr_is_encrypted(const char *name);

/* Seals an xattr value; file_id is NULL for objects without a header. out: len + 40. */
/* 0, or -EIO when the AEAD fails (out then holds nothing to store). */
__attribute__((warn_unused_result)) int xattr_seal(const uint8_t key[32], const uint8_t *file_id,
						   const char *name, const void *val, size_t len,
						   uint8_t *out);

/* Opens a sealed value into out (in_len - 40 bytes); -EBADMSG if not authentic. */
__attribute__((warn_unused_result)) int xattr_open(const uint8_t key[32], const uint8_t *file_id,
						   const char *name, const uint8_t *in,
						   size_t in_len, void *out);

/*
 * Re-seals every user.* xattr of fd from (old_key, old_id) to (new_key, new_id); nk (NULL on
 * plaintext-name volumes) turns backing xattr names into the plaintext ones values are bound
 * to. -errno.
 */
int xattr_rekey_fd(int fd, const struct name_keys *nk, const uint8_t old_key[32],
		   const uint8_t old_id[FILE_ID_LEN], const uint8_t new_key[32],
		   const uint8_t new_id[FILE_ID_LEN]);

/*
 * Seals a symlink target into a base64url string (NUL-terminated) in out (out_size bytes).
 * -ENAMETOOLONG past SYMLINK_MAX_TARGET.
 */
__attribute__((warn_unused_result)) int symlink_seal(const uint8_t name_key[32],
						     const uint8_t volume_id[16],
						     const char *target, char *out,
						     size_t out_size);

/* Opens an encoded target; returns its length, or -EBADMSG. out gets a NUL terminator. */
__attribute__((warn_unused_result)) ssize_t symlink_open(const uint8_t name_key[32],
							 const uint8_t volume_id[16],
							 const char *enc, char *out,
							 size_t out_size);

/* Seals len bytes of target into out (len + OBJ_OVERHEAD bytes): a long target's side object
 * (format/linktarget.h). 0, or -EIO. */
__attribute__((warn_unused_result)) int symlink_seal_bytes(const uint8_t name_key[32],
							   const uint8_t volume_id[16],
							   const char *target, size_t len,
							   uint8_t *out);

/* Opens in_len sealed bytes into out (NUL-terminated); the target's length, or -EBADMSG. */
__attribute__((warn_unused_result)) ssize_t symlink_open_bytes(const uint8_t name_key[32],
							       const uint8_t volume_id[16],
							       const uint8_t *in, size_t in_len,
							       char *out, size_t out_size);

/* Plaintext length of a target from the length of its encoded form (for st_size). */
size_t symlink_plain_len(size_t enc_len);

#endif
