#include "rsa_wrap.h"

#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "secmem.h"

/* Reads a PEM key: private if want_private, else public (a private PEM also gives its public). */
static int pem_load(const uint8_t *pem, size_t len, int want_private, EVP_PKEY **out)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	EVP_PKEY *pk = NULL;

	if (!bio)
		return RSA_ERR_INTERNAL;
	pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	if (!pk && !want_private) {
		(void)BIO_reset(bio);
		pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	} else if (!pk) {
		(void)BIO_reset(bio);
		pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
		if (pk) {
			EVP_PKEY_free(pk);
			BIO_free(bio);
			return RSA_ERR_PUBLIC;
		}
	}
	BIO_free(bio);
	if (!pk)
		return RSA_ERR_PEM;
	if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
		EVP_PKEY_free(pk);
		return RSA_ERR_NOT_RSA;
	}
	if (EVP_PKEY_get_bits(pk) != RSA_WRAP_BITS) {
		EVP_PKEY_free(pk);
		return RSA_ERR_BITS;
	}
	*out = pk;
	return RSA_OK;
}

/* OAEP with SHA-256 for both the label hash and MGF1. */
static int oaep_setup(EVP_PKEY_CTX *ctx)
{
	return EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0 &&
	       EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) > 0 &&
	       EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) > 0;
}

int rsa_wrap_key(const uint8_t *pem, size_t pem_len, const uint8_t key[32],
		 uint8_t out[RSA_WRAP_LEN])
{
	EVP_PKEY *pk = NULL;
	EVP_PKEY_CTX *ctx;
	size_t out_len = RSA_WRAP_LEN;
	int rc = pem_load(pem, pem_len, 0, &pk);

	if (rc != RSA_OK)
		return rc;
	ctx = EVP_PKEY_CTX_new(pk, NULL);
	rc = ctx && EVP_PKEY_encrypt_init(ctx) > 0 && oaep_setup(ctx) &&
		     EVP_PKEY_encrypt(ctx, out, &out_len, key, 32) > 0 && out_len == RSA_WRAP_LEN
		 ? RSA_OK
		 : RSA_ERR_INTERNAL;
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	return rc;
}

int rsa_unwrap_key(const uint8_t *pem, size_t pem_len, const uint8_t in[RSA_WRAP_LEN],
		   uint8_t key[32])
{
	EVP_PKEY *pk = NULL;
	EVP_PKEY_CTX *ctx;
	uint8_t *buf = secmem_alloc(RSA_WRAP_LEN);
	size_t len = RSA_WRAP_LEN;
	int rc = buf ? pem_load(pem, pem_len, 1, &pk) : RSA_ERR_INTERNAL;

	if (rc != RSA_OK) {
		secmem_free(buf);
		return rc;
	}
	ctx = EVP_PKEY_CTX_new(pk, NULL);
	rc = ctx && EVP_PKEY_decrypt_init(ctx) > 0 && oaep_setup(ctx) &&
		     EVP_PKEY_decrypt(ctx, buf, &len, in, RSA_WRAP_LEN) > 0 && len == 32
		 ? RSA_OK
		 : RSA_ERR_DECRYPT;
	if (rc == RSA_OK)
		memcpy(key, buf, 32);
	secmem_free(buf);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	return rc;
}

int rsa_key_check(const uint8_t *pem, size_t pem_len, int want_private)
{
	EVP_PKEY *pk = NULL;
	int rc = pem_load(pem, pem_len, want_private, &pk);

	EVP_PKEY_free(pk);
	return rc;
}

const char *rsa_wrap_strerror(int err)
{
	switch (err) {
	case RSA_ERR_PEM:
		return "invalid key material: not a PEM key that can be read";
	case RSA_ERR_NOT_RSA:
		return "invalid key material: not an RSA key";
	case RSA_ERR_BITS:
		return "invalid key material: the RSA key is not 4096 bits";
	case RSA_ERR_PUBLIC:
		return "invalid key material: a public key where the private key is needed";
	case RSA_ERR_DECRYPT:
		return "this private key does not open the keyring's RSA slot";
	default:
		return "RSA operation failed";
	}
}
