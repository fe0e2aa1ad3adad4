/* Secure memory: every key lives in guarded, locked pages and is wiped on free. */
#ifndef KEKFS_SECMEM_H
#define KEKFS_SECMEM_H

#include <stddef.h>
#include <sys/types.h>

/* Initialises libsodium and turns off core dumps; call once before any key exists. */
int secmem_init(void);

/* Allocates n bytes of guarded, mlock'ed memory (sodium_malloc); NULL on failure. */
void *secmem_alloc(size_t n);

/* Wipes and frees memory from secmem_alloc; NULL is allowed. */
void secmem_free(void *p);

/*
 * A SECMEM_KEY_LEN-byte slot for a short-lived key (a file's DEK, loaded at every open),
 * carved from shared sodium_malloc'd pages: locked and kept out of core dumps like
 * secmem_alloc, but without its ~10 system calls per key. Neighbouring slots are not
 * separated by guard pages. NULL on failure; secmem_key_free wipes the slot (NULL is fine).
 */
#define SECMEM_KEY_LEN 32
void *secmem_key_alloc(void);
void secmem_key_free(void *p);

/*
 * Reads a SECMEM_KEY_LEN-byte key from fd (a key file, BYOK key material, an fd passed to the
 * daemon) into new locked memory: returns SECMEM_KEY_LEN with *key set (secmem_free it), or
 * with *key NULL how many bytes fd held (SECMEM_KEY_LEN + 1: more), -EISDIR for a directory,
 * -ENOMEM or -errno. The one reader, so that every place agrees on what a key file is.
 */
ssize_t secmem_read_key(int fd, unsigned char **key);

/* Wipes a stack or heap buffer in a way the compiler cannot elide. */
void secmem_wipe(void *p, size_t n);

/*
 * Zeroes the SECMEM_STACK_WIPE bytes of stack below the caller: hash and KDF code inside
 * libraries (libsodium's BLAKE2b rounds) leaves copies of its input in stack frames it never
 * wipes. Call after a function that handled a root secret has returned.
 */
#define SECMEM_STACK_WIPE 65536
void secmem_wipe_stack(void);

#endif
