#include "aead.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

#define GCM_NONCE_LEN 12

int aead_cipher_valid(int cipher)
{
	return cipher == AEAD_XCHACHA20_POLY1305 || cipher == AEAD_AES256_GCM;
}

const char *aead_cipher_name(int cipher)
{
	switch (cipher) {
	case AEAD_XCHACHA20_POLY1305:
		return "xchacha20-poly1305";
	case AEAD_AES256_GCM:
		return "aes-256-gcm";
	default:
		return "unknown";
	}
}

int aead_cipher_from_name(const char *name)
{
	if (strcmp(name, "xchacha20-poly1305") == 0)
		return AEAD_XCHACHA20_POLY1305;
	if (strcmp(name, "aes-256-gcm") == 0)
		return AEAD_AES256_GCM;
	return 0;
}

size_t aead_nonce_len(int cipher)
{
	return cipher == AEAD_AES256_GCM ? GCM_NONCE_LEN
					 : crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
}

size_t aead_overhead(int cipher)
{
	return aead_nonce_len(cipher) + AEAD_TAG_LEN;
}

static pthread_key_t gcm_ctx_key;
static pthread_once_t gcm_ctx_once = PTHREAD_ONCE_INIT;

static void gcm_ctx_free(void *ctx)
{
	EVP_CIPHER_CTX_free(ctx);
}

static void gcm_ctx_key_create(void)
{
	(void)pthread_key_create(&gcm_ctx_key, gcm_ctx_free);
}

/*
 * One EVP context per thread (freed when the thread ends), reset and so cleansed of the
 * key schedule after every call: the AES key schedule never outlives its request.
 */
static EVP_CIPHER_CTX *gcm_ctx(void)
{
	EVP_CIPHER_CTX *ctx;

	pthread_once(&gcm_ctx_once, gcm_ctx_key_create);
	ctx = pthread_getspecific(gcm_ctx_key);
	if (!ctx) {
		ctx = EVP_CIPHER_CTX_new();
		if (ctx && pthread_setspecific(gcm_ctx_key, ctx) != 0) {
			EVP_CIPHER_CTX_free(ctx);
			ctx = NULL;
		}
	}
	return ctx;
}

static int gcm_seal(const uint8_t *key, const uint8_t *aad, size_t aad_len, const uint8_t *pt,
		    size_t len, uint8_t *out)
{
	EVP_CIPHER_CTX *ctx = gcm_ctx();
	uint8_t *nonce = out, *ct = out + GCM_NONCE_LEN, *tag = ct + len;
	int n, ok;

	if (!ctx)
		return -ENOMEM;
	randombytes_buf(nonce, GCM_NONCE_LEN);
	ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) == 1 &&
	     (aad_len == 0 || EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aad_len) == 1) &&
	     EVP_EncryptUpdate(ctx, ct, &n, pt, (int)len) == 1 &&
	     EVP_EncryptFinal_ex(ctx, ct + n, &n) == 1 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, AEAD_TAG_LEN, tag) == 1;
	EVP_CIPHER_CTX_reset(ctx);
	return ok ? 0 : -EIO;
}

static int gcm_open(const uint8_t *key, const uint8_t *aad, size_t aad_len, const uint8_t *in,
		    size_t len, uint8_t *pt)
{
	EVP_CIPHER_CTX *ctx = gcm_ctx();
	const uint8_t *nonce = in, *ct = in + GCM_NONCE_LEN, *tag = ct + len;
	int n, ok;

	if (!ctx)
		return -ENOMEM;
	ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) == 1 &&
	     (aad_len == 0 || EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aad_len) == 1) &&
	     EVP_DecryptUpdate(ctx, pt, &n, ct, (int)len) == 1 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, AEAD_TAG_LEN, (void *)tag) == 1 &&
	     EVP_DecryptFinal_ex(ctx, pt + n, &n) == 1;
	EVP_CIPHER_CTX_reset(ctx);
	if (!ok) {
		sodium_memzero(pt, len);
		return -EBADMSG;
	}
	return 0;
}

int aead_seal(int cipher, const uint8_t key[AEAD_KEY_LEN], const uint8_t *aad, size_t aad_len,
	      const uint8_t *pt, size_t len, uint8_t *out)
{
	const size_t nlen = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;

	if (cipher == AEAD_AES256_GCM)
		return gcm_seal(key, aad, aad_len, pt, len, out);
	if (cipher != AEAD_XCHACHA20_POLY1305)
		return -EINVAL;
	randombytes_buf(out, nlen);
	crypto_aead_xchacha20poly1305_ietf_encrypt_detached(out + nlen, out + nlen + len, NULL, pt,
							    len, aad, aad_len, NULL, out, key);
	return 0;
}

int aead_open(int cipher, const uint8_t key[AEAD_KEY_LEN], const uint8_t *aad, size_t aad_len,
	      const uint8_t *in, size_t in_len, uint8_t *pt)
{
	const size_t nlen = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
	size_t len;

	if (!aead_cipher_valid(cipher) || in_len < aead_overhead(cipher))
		return -EBADMSG;
	len = in_len - aead_overhead(cipher);
	if (cipher == AEAD_AES256_GCM)
		return gcm_open(key, aad, aad_len, in, len, pt);
	if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
		pt, NULL, in + nlen, len, in + nlen + len, aad, aad_len, in, key) != 0) {
		sodium_memzero(pt, len);
		return -EBADMSG;
	}
	return 0;
}
