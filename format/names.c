#include "names.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "../crypto/kdf.h"
#include "../crypto/secmem.h"

#define SIV_KEY_LEN 64
#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define XATTR_AD "KEKFS-XATTR-NAME"

struct name_keys {
	uint8_t *names; /* AES-256-SIV key for file names */
	uint8_t *xattr; /* AES-256-SIV key for user.* xattr names */
};

struct name_keys *name_keys_new(const uint8_t name_key[32])
{
	struct name_keys *nk = secmem_alloc(sizeof(*nk));

	if (!nk)
		return NULL;
	nk->names = secmem_alloc(SIV_KEY_LEN);
	nk->xattr = secmem_alloc(SIV_KEY_LEN);
	if (!nk->names || !nk->xattr) {
		name_keys_free(nk);
		return NULL;
	}
	/* one key per purpose, so a name sealed for one use never opens in another */
	kdf_subkey(name_key, KDF_LABEL_NAME_SIV, nk->names, SIV_KEY_LEN);
	kdf_subkey(name_key, KDF_LABEL_XATTR_NAME_SIV, nk->xattr, SIV_KEY_LEN);
	return nk;
}

void name_keys_free(struct name_keys *nk)
{
	if (!nk)
		return;
	secmem_free(nk->names);
	secmem_free(nk->xattr);
	secmem_free(nk);
}

static EVP_CIPHER *siv_ciphers[2]; /* AES-128-SIV, AES-256-SIV: fetched once, kept */
static pthread_once_t siv_once = PTHREAD_ONCE_INIT;

/* A fetch walks the provider tables under a lock: a third of a name's cost if done per call. */
static void siv_fetch(void)
{
	siv_ciphers[0] = EVP_CIPHER_fetch(NULL, "AES-128-SIV", NULL);
	siv_ciphers[1] = EVP_CIPHER_fetch(NULL, "AES-256-SIV", NULL);
}

/* The SIV cipher for a key length (NULL if OpenSSL has none); shared, never freed. */
static const EVP_CIPHER *siv_cipher(size_t key_len)
{
	pthread_once(&siv_once, siv_fetch);
	return siv_ciphers[key_len == 32 ? 0 : 1];
}

/* Runs one SIV operation; the tag is set before (decrypt) or read after (encrypt). */
static int siv_run(int enc, const uint8_t *key, size_t key_len, const uint8_t *ad, size_t ad_len,
		   const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[NAME_SIV_TAG])
{
	const EVP_CIPHER *c = siv_cipher(key_len);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int ok = c && ctx && (key_len == 32 || key_len == SIV_KEY_LEN), n = 0;

	ok = ok && EVP_CipherInit_ex(ctx, c, NULL, key, NULL, enc) == 1;
	if (ok && !enc)
		ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, NAME_SIV_TAG, tag) == 1;
	ok = ok && EVP_CipherUpdate(ctx, NULL, &n, ad, (int)ad_len) == 1;
	ok = ok && EVP_CipherUpdate(ctx, out, &n, in, (int)len) == 1;
	ok = ok && EVP_CipherFinal_ex(ctx, out + n, &n) == 1;
	if (ok && enc)
		ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, NAME_SIV_TAG, tag) == 1;
	EVP_CIPHER_CTX_free(ctx); /* resets, cleansing the key schedule */
	return ok ? 0 : -1;
}

int name_siv_seal(const uint8_t *key, size_t key_len, const uint8_t *ad, size_t ad_len,
		  const uint8_t *in, size_t len, uint8_t *out)
{
	return siv_run(1, key, key_len, ad, ad_len, in, len, out + NAME_SIV_TAG, out) == 0 ? 0
											   : -EIO;
}

int name_siv_open(const uint8_t *key, size_t key_len, const uint8_t *ad, size_t ad_len,
		  const uint8_t *in, size_t len, uint8_t *out)
{
	uint8_t tag[NAME_SIV_TAG];

	if (len < NAME_SIV_TAG)
		return -EBADMSG;
	memcpy(tag, in, NAME_SIV_TAG);
	if (siv_run(0, key, key_len, ad, ad_len, in + NAME_SIV_TAG, len - NAME_SIV_TAG, out, tag) !=
	    0) {
		sodium_memzero(out, len - NAME_SIV_TAG);
		return -EBADMSG;
	}
	return 0;
}

/* Seals len bytes and encodes them into out (out_size bytes). */
static int seal_encode(const uint8_t *key, const uint8_t *ad, size_t ad_len, const char *in,
		       size_t len, char *out, size_t out_size)
{
	uint8_t bin[NAME_SIV_TAG + NAME_PLAIN_MAX];

	if (name_siv_seal(key, SIV_KEY_LEN, ad, ad_len, (const uint8_t *)in, len, bin) != 0)
		return -EIO;
	sodium_bin2base64(out, out_size, bin, NAME_SIV_TAG + len, B64);
	return (int)strlen(out);
}

/* Decodes and opens an encoded name into out (NAME_PLAIN_MAX + 1); its length or -EBADMSG. */
static int decode_open(const uint8_t *key, const uint8_t *ad, size_t ad_len, const char *enc,
		       char *out)
{
	uint8_t bin[NAME_SIV_TAG + NAME_PLAIN_MAX + 2];
	size_t enc_len = strlen(enc), bin_len = 0;
	const char *end = NULL;

	if (sodium_base642bin(bin, sizeof(bin), enc, enc_len, NULL, &bin_len, &end, B64) != 0 ||
	    end != enc + enc_len || bin_len <= NAME_SIV_TAG ||
	    bin_len > NAME_SIV_TAG + NAME_PLAIN_MAX)
		return -EBADMSG;
	if (name_siv_open(key, SIV_KEY_LEN, ad, ad_len, bin, bin_len, (uint8_t *)out) != 0)
		return -EBADMSG;
	out[bin_len - NAME_SIV_TAG] = '\0';
	return (int)(bin_len - NAME_SIV_TAG);
}

int name_encrypt(const struct name_keys *nk, const uint8_t dir_id[NAME_DIRID_LEN], const char *name,
		 char *out)
{
	size_t len = strnlen(name, NAME_PLAIN_MAX + 1);

	if (len == 0 || strchr(name, '/'))
		return -EINVAL;
	if (len > NAME_PLAIN_MAX)
		return -ENAMETOOLONG;
	return seal_encode(nk->names, dir_id, NAME_DIRID_LEN, name, len, out, NAME_ENC_SIZE);
}

int name_decrypt(const struct name_keys *nk, const uint8_t dir_id[NAME_DIRID_LEN], const char *enc,
		 char *out)
{
	int n = decode_open(nk->names, dir_id, NAME_DIRID_LEN, enc, out);

	/* Authentic names are ones kekfs wrote; refuse anything a path could misuse anyway. */
	if (n > 0 && ((size_t)n != strlen(out) || strchr(out, '/') || strcmp(out, ".") == 0 ||
		      strcmp(out, "..") == 0))
		n = -EBADMSG;
	return n;
}

void name_long_backing(const char *enc, char *out)
{
	uint8_t h[32];

	crypto_generichash(h, sizeof(h), (const uint8_t *)enc, strlen(enc), NULL, 0);
	memcpy(out, NAME_LONG_PREFIX, sizeof(NAME_LONG_PREFIX) - 1);
	sodium_bin2base64(out + sizeof(NAME_LONG_PREFIX) - 1, 44, h, sizeof(h), B64);
}

int name_is_long(const char *backing)
{
	return strncmp(backing, NAME_LONG_PREFIX, sizeof(NAME_LONG_PREFIX) - 1) == 0 &&
	       strlen(backing) == NAME_LONG_LEN;
}

int name_is_internal(const char *backing)
{
	return backing[0] == '.';
}

int xattr_name_encrypt(const struct name_keys *nk, const char *name, char *out)
{
	size_t len = strnlen(name + 5, 256);
	char enc[NAME_ENC_SIZE];

	if (len == 0)
		return -EINVAL;
	if (len > XATTR_NAME_PLAIN_MAX)
		return -ERANGE;
	if (seal_encode(nk->xattr, (const uint8_t *)XATTR_AD, 16, name + 5, len, enc, sizeof(enc)) <
	    0)
		return -EIO;
	memcpy(out, "user.", 5);
	strcpy(out + 5, enc);
	return 0;
}

int xattr_name_decrypt(const struct name_keys *nk, const char *enc, char *out)
{
	int n;

	/* No xattr name is longer than 255 bytes; a longer one would not fit out once opened. */
	if (strncmp(enc, "user.", 5) != 0 || strnlen(enc, 256) > 255)
		return -EBADMSG;
	n = decode_open(nk->xattr, (const uint8_t *)XATTR_AD, 16, enc + 5, out + 5);
	if (n < 0 || (size_t)n != strlen(out + 5))
		return -EBADMSG;
	memcpy(out, "user.", 5);
	return 0;
}
