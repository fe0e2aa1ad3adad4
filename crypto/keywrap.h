/* Wrapping one 256-bit key under another: XChaCha20-Poly1305, random nonce, caller's AAD. */
#ifndef KEKFS_KEYWRAP_H
#define KEKFS_KEYWRAP_H

#include <stddef.h>
#include <stdint.h>

#define KEYWRAP_KEY_LEN 32
/* nonce (24) || wrapped key (32) || tag (16) */
#define KEYWRAP_LEN 72

/* 0, or -EINVAL/-EIO from the AEAD: out then holds no wrap and must not be written. */
__attribute__((warn_unused_result)) int key_wrap(const uint8_t kek[KEYWRAP_KEY_LEN],
						 const uint8_t *aad, size_t aad_len,
						 const uint8_t key[KEYWRAP_KEY_LEN],
						 uint8_t out[KEYWRAP_LEN]);

/* Returns 0, or -EBADMSG when the wrapping key is wrong or the wrap or AAD was altered. */
__attribute__((warn_unused_result)) int key_unwrap(const uint8_t kek[KEYWRAP_KEY_LEN],
						   const uint8_t *aad, size_t aad_len,
						   const uint8_t in[KEYWRAP_LEN],
						   uint8_t key[KEYWRAP_KEY_LEN]);

#endif
