/*
 * The token does the crypto: kekfs hands it a random 32-byte wrapping key to encrypt with
 * AES-256-GCM (CKM_AES_GCM through C_Encrypt) under a key that cannot leave it, and keeps
 * the result in the slot. Unlocking asks the token to decrypt it again. Each call loads the
 * module, logs in, does its one operation and unloads, so no session outlives an unlock.
 */
#include "pkcs11_slot.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <p11-kit/pkcs11.h>
#include <sodium.h>

#include "../crypto/secmem.h"

#define P11_LABEL_MAX 32 /* CK_TOKEN_INFO's label: 32 bytes, padded with spaces */
#define P11_MAX_SLOTS 64
#define P11_BLOB_GCM 1 /* the blob's first byte: the mechanism that sealed it */
#define P11_IV_LEN 12
#define P11_TAG_LEN 16
#define P11_BLOB_LEN (1 + P11_IV_LEN + 32 + P11_TAG_LEN)
#define P11_AAD "kekfs pkcs11 slot v1"

struct p11_spec {
	char module[1024];
	char token[P11_LABEL_MAX + 1];
	char key[256];
};

/* One logged-in session on the spec's token. */
struct p11 {
	struct kr_external *x;
	struct p11_spec spec;
	void *dl;
	CK_FUNCTION_LIST_PTR f;
	CK_SESSION_HANDLE session;
	int initialized, open, logged_in;
};

static int p11_fail(struct kr_external *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int p11_fail(struct kr_external *x, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(x->msg, sizeof(x->msg), fmt, ap);
	va_end(ap);
	return -1;
}

/* Copies the value of "name=" from one ';'-separated field into out; 1 if it was that name. */
static int spec_field(const char *field, size_t len, const char *name, char *out, size_t size)
{
	size_t n = strlen(name);

	if (len <= n || strncmp(field, name, n) != 0 || field[n] != '=')
		return 0;
	snprintf(out, size, "%.*s", (int)(len - n - 1), field + n + 1);
	return len - n - 1 < size ? 1 : -1;
}

static int spec_parse(const char *spec, struct p11_spec *p)
{
	const char *s = spec;

	memset(p, 0, sizeof(*p));
	while (*s) {
		size_t len = strcspn(s, ";");
		int a = spec_field(s, len, "module", p->module, sizeof(p->module));
		int b = spec_field(s, len, "token", p->token, sizeof(p->token));
		int c = spec_field(s, len, "key", p->key, sizeof(p->key));

		if (a + b + c != 1)
			return -1;
		s += len + (s[len] == ';');
	}
	return p->module[0] == '/' && p->token[0] && p->key[0] ? 0 : -1;
}

int pkcs11_spec_check(const char *spec, char *msg, size_t msg_size)
{
	struct p11_spec p;

	if (spec_parse(spec, &p) == 0)
		return 0;
	snprintf(msg, msg_size,
		 "the PKCS#11 spec '%.200s' must be 'module=/ABSOLUTE/PATH.so;token=LABEL;"
		 "key=LABEL' (token label at most 32 bytes)",
		 spec);
	return -1;
}

/* Loads the module and finds its function list. */
static int p11_load(struct p11 *t)
{
	CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR);
	CK_RV rv;

	t->dl = dlopen(t->spec.module, RTLD_NOW | RTLD_LOCAL);
	if (!t->dl)
		return p11_fail(t->x,
				"PKCS#11 module %s cannot be loaded (%s): install it or fix "
				"module= in the spec",
				t->spec.module, dlerror());
	*(void **)&get_list = dlsym(t->dl, "C_GetFunctionList");
	if (!get_list || get_list(&t->f) != CKR_OK || !t->f)
		return p11_fail(t->x, "%s is not a PKCS#11 module (no C_GetFunctionList)",
				t->spec.module);
	rv = t->f->C_Initialize(NULL);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED)
		return p11_fail(t->x, "PKCS#11 module %s failed to initialise (CKR 0x%lx)",
				t->spec.module, (unsigned long)rv);
	t->initialized = rv == CKR_OK;
	return 0;
}

/* 1 if the token's space-padded label is label. */
static int label_is(const unsigned char padded[P11_LABEL_MAX], const char *label)
{
	size_t n = strlen(label);

	if (n > P11_LABEL_MAX || memcmp(padded, label, n) != 0)
		return 0;
	for (size_t i = n; i < P11_LABEL_MAX; i++)
		if (padded[i] != ' ')
			return 0;
	return 1;
}

/* Finds the token by label among the slots that have a token present. */
static int p11_find_token(struct p11 *t, CK_SLOT_ID *slot)
{
	CK_SLOT_ID slots[P11_MAX_SLOTS];
	CK_ULONG n = P11_MAX_SLOTS;

	if (t->f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
		return p11_fail(t->x, "PKCS#11 module %s cannot list its slots", t->spec.module);
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO info;

		if (t->f->C_GetTokenInfo(slots[i], &info) == CKR_OK &&
		    label_is(info.label, t->spec.token)) {
			*slot = slots[i];
			return 0;
		}
	}
	return p11_fail(t->x,
			"no token labelled '%s' is present in %s: plug it in, or check the "
			"label (softhsm2-util --show-slots, p11tool --list-tokens)",
			t->spec.token, t->spec.module);
}

static int p11_login(struct p11 *t, CK_SLOT_ID slot)
{
	CK_RV rv =
	    t->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &t->session);

	if (rv != CKR_OK)
		return p11_fail(t->x, "cannot open a session on token '%s' (CKR 0x%lx)",
				t->spec.token, (unsigned long)rv);
	t->open = 1;
	rv = t->f->C_Login(t->session, CKU_USER, (CK_UTF8CHAR_PTR)t->x->pin, t->x->pin_len);
	if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE)
		return p11_fail(t->x, "wrong PIN for token '%s'", t->spec.token);
	if (rv == CKR_PIN_LOCKED)
		return p11_fail(t->x, "the PIN of token '%s' is locked: unlock it with the SO PIN",
				t->spec.token);
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
		return p11_fail(t->x, "cannot log in to token '%s' (CKR 0x%lx)", t->spec.token,
				(unsigned long)rv);
	t->logged_in = rv == CKR_OK;
	return 0;
}

static int p11_open(struct p11 *t, struct kr_external *x, const char *spec)
{
	CK_SLOT_ID slot;

	memset(t, 0, sizeof(*t));
	t->x = x;
	if (spec_parse(spec, &t->spec) != 0)
		return pkcs11_spec_check(spec, x->msg, sizeof(x->msg));
	/* The spec comes from the keyring, which is read before its MAC can be checked. */
	if (x->only && strcmp(t->spec.module, x->only) != 0)
		return p11_fail(x,
				"the keyring's token slot names a PKCS#11 module other than %s: "
				"not loaded (check the keyring, or name its module)",
				x->only);
	if (!x->pin)
		return p11_fail(x, "no PIN for token '%s'", t->spec.token);
	if (p11_load(t) != 0 || p11_find_token(t, &slot) != 0)
		return -1;
	return p11_login(t, slot);
}

static void p11_close(struct p11 *t)
{
	if (t->logged_in)
		t->f->C_Logout(t->session);
	if (t->open)
		t->f->C_CloseSession(t->session);
	if (t->initialized)
		t->f->C_Finalize(NULL);
	if (t->dl)
		dlclose(t->dl);
}

/* The secret keys labelled like the spec's key: how many, and the first. */
static int p11_find_keys(struct p11 *t, CK_OBJECT_HANDLE *key, CK_ULONG *count)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)},
			       {CKA_LABEL, t->spec.key, strlen(t->spec.key)}};
	CK_OBJECT_HANDLE found[2];

	*count = 0;
	if (t->f->C_FindObjectsInit(t->session, tmpl, 2) != CKR_OK)
		return p11_fail(t->x, "cannot search token '%s' for keys", t->spec.token);
	if (t->f->C_FindObjects(t->session, found, 2, count) != CKR_OK)
		*count = 0;
	t->f->C_FindObjectsFinal(t->session);
	*key = found[0];
	return 0;
}

/* The spec's key: exactly one, AES, and not extractable. */
static int p11_key(struct p11 *t, CK_OBJECT_HANDLE *key)
{
	CK_BBOOL extractable = CK_TRUE;
	CK_KEY_TYPE type = 0;
	CK_ATTRIBUTE attrs[] = {{CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
				{CKA_KEY_TYPE, &type, sizeof(type)}};
	CK_ULONG count;

	if (p11_find_keys(t, key, &count) != 0)
		return -1;
	if (count == 0)
		return p11_fail(t->x,
				"token '%s' has no secret key labelled '%s': create one with "
				"'kekfs keys create-token-key --pkcs11 SPEC'",
				t->spec.token, t->spec.key);
	if (count > 1)
		return p11_fail(t->x,
				"token '%s' has several keys labelled '%s': give the key a "
				"label of its own",
				t->spec.token, t->spec.key);
	if (t->f->C_GetAttributeValue(t->session, *key, attrs, 2) != CKR_OK)
		return p11_fail(t->x, "cannot read the attributes of key '%s'", t->spec.key);
	if (type != CKK_AES)
		return p11_fail(t->x, "key '%s' in token '%s' is not an AES key", t->spec.key,
				t->spec.token);
	if (extractable)
		return p11_fail(t->x,
				"key '%s' in token '%s' is extractable: kekfs only uses a key "
				"that cannot leave the token (make one with 'kekfs keys "
				"create-token-key')",
				t->spec.key, t->spec.token);
	return 0;
}

static void gcm_params(CK_GCM_PARAMS *gcm, CK_MECHANISM *mech, uint8_t *iv)
{
	memset(gcm, 0, sizeof(*gcm));
	gcm->pIv = iv;
	gcm->ulIvLen = P11_IV_LEN;
	gcm->ulIvBits = P11_IV_LEN * 8;
	gcm->pAAD = (CK_BYTE_PTR)P11_AAD;
	gcm->ulAADLen = strlen(P11_AAD);
	gcm->ulTagBits = P11_TAG_LEN * 8;
	*mech = (CK_MECHANISM){CKM_AES_GCM, gcm, sizeof(*gcm)};
}

static int p11_seal(struct kr_external *x, const char *spec, const uint8_t key[32], uint8_t *blob,
		    size_t *blob_len)
{
	struct p11 t;
	CK_OBJECT_HANDLE k;
	CK_GCM_PARAMS gcm;
	CK_MECHANISM mech;
	CK_ULONG out_len = 32 + P11_TAG_LEN;
	int rc = -1;

	if (*blob_len < P11_BLOB_LEN)
		return p11_fail(x, "no room for the sealed key");
	blob[0] = P11_BLOB_GCM;
	randombytes_buf(blob + 1, P11_IV_LEN);
	gcm_params(&gcm, &mech, blob + 1);
	if (p11_open(&t, x, spec) == 0 && p11_key(&t, &k) == 0) {
		if (t.f->C_EncryptInit(t.session, &mech, k) != CKR_OK ||
		    t.f->C_Encrypt(t.session, (CK_BYTE_PTR)key, 32, blob + 1 + P11_IV_LEN,
				   &out_len) != CKR_OK ||
		    out_len != 32 + P11_TAG_LEN)
			p11_fail(x,
				 "token '%s' cannot encrypt with AES-GCM (CKM_AES_GCM) using key "
				 "'%s'",
				 t.spec.token, t.spec.key);
		else
			rc = 0, *blob_len = P11_BLOB_LEN;
	}
	p11_close(&t);
	return rc;
}

static int p11_unseal(struct kr_external *x, const char *spec, const uint8_t *blob, size_t blob_len,
		      uint8_t key[32])
{
	struct p11 t;
	CK_OBJECT_HANDLE k;
	CK_GCM_PARAMS gcm;
	CK_MECHANISM mech;
	uint8_t iv[P11_IV_LEN], *out = secmem_alloc(64);
	CK_ULONG out_len = 64;
	int rc = -1;

	if (!out)
		return p11_fail(x, "out of secure memory");
	if (blob_len != P11_BLOB_LEN || blob[0] != P11_BLOB_GCM) {
		secmem_free(out);
		return p11_fail(x, "the PKCS#11 slot is damaged (unknown sealed-key format)");
	}
	memcpy(iv, blob + 1, P11_IV_LEN);
	gcm_params(&gcm, &mech, iv);
	if (p11_open(&t, x, spec) == 0 && p11_key(&t, &k) == 0) {
		if (t.f->C_DecryptInit(t.session, &mech, k) != CKR_OK ||
		    t.f->C_Decrypt(t.session, (CK_BYTE_PTR)blob + 1 + P11_IV_LEN, 32 + P11_TAG_LEN,
				   out, &out_len) != CKR_OK ||
		    out_len != 32)
			p11_fail(x,
				 "key '%s' in token '%s' does not open this slot (another key "
				 "with the same label?)",
				 t.spec.key, t.spec.token);
		else
			rc = 0, memcpy(key, out, 32);
	}
	p11_close(&t);
	secmem_free(out);
	return rc;
}

void pkcs11_external(struct kr_external *x, const uint8_t *pin, size_t pin_len)
{
	x->seal = p11_seal;
	x->open = p11_unseal;
	x->pin = pin;
	x->pin_len = pin_len;
	x->msg[0] = '\0';
}

int pkcs11_create_key(struct kr_external *x, const char *spec)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_AES;
	CK_ULONG len = 32;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
	struct p11 t;
	CK_OBJECT_HANDLE k;
	CK_ULONG count;
	int rc = -1;

	if (p11_open(&t, x, spec) == 0 && p11_find_keys(&t, &k, &count) == 0) {
		CK_ATTRIBUTE tmpl[] = {
		    {CKA_CLASS, &cls, sizeof(cls)},
		    {CKA_KEY_TYPE, &type, sizeof(type)},
		    {CKA_VALUE_LEN, &len, sizeof(len)},
		    {CKA_TOKEN, &yes, 1},
		    {CKA_PRIVATE, &yes, 1},
		    {CKA_SENSITIVE, &yes, 1},
		    {CKA_EXTRACTABLE, &no, 1},
		    {CKA_ENCRYPT, &yes, 1},
		    {CKA_DECRYPT, &yes, 1},
		    {CKA_WRAP, &no, 1},
		    {CKA_LABEL, t.spec.key, strlen(t.spec.key)},
		};
		CK_RV rv;

		if (count > 0)
			p11_fail(x,
				 "token '%s' already has a key labelled '%s': use it, or choose "
				 "another label",
				 t.spec.token, t.spec.key);
		else if ((rv = t.f->C_GenerateKey(t.session, &mech, tmpl,
						  sizeof(tmpl) / sizeof(tmpl[0]), &k)) != CKR_OK)
			p11_fail(x, "token '%s' cannot create an AES-256 key (CKR 0x%lx)",
				 t.spec.token, (unsigned long)rv);
		else
			rc = 0;
	}
	p11_close(&t);
	return rc;
}
