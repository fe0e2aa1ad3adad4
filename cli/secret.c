#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>

#include <sodium.h>
#include <unistd.h>

#include "../crypto/kdf.h"
#include "../crypto/rsa_wrap.h"

#include "../crypto/secmem.h"
#include "../keyring/pkcs11_slot.h"
#include "cli.h"
#include "keysource.h"
#include "kms.h"

#define PASSPHRASE_MAX 1024

/* Reads up to max bytes from fd into buf; returns the count, or -errno. */
static ssize_t read_upto(int fd, uint8_t *buf, size_t max)
{
	size_t got = 0;

	while (got < max) {
		ssize_t n = read(fd, buf + got, max - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* Reads a PEM RSA key into secure memory and checks it is what the command needs. */
static int rsa_key_read(const char *path, int want_private, struct kr_secret *secret)
{
	const size_t max = 16384;
	uint8_t *buf = secmem_alloc(max);
	ssize_t n = -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (buf && fd >= 0)
		n = read_upto(fd, buf, max);
	if (fd >= 0)
		close(fd);
	if (!buf || n < 0) {
		secmem_free(buf);
		return cli_error("invalid key material: cannot read %s: %s", path,
				 buf ? strerror(fd < 0 ? errno : (int)-n) : "out of secure memory");
	}
	rc = rsa_key_check(buf, (size_t)n, want_private);
	if (rc != RSA_OK) {
		secmem_free(buf);
		return cli_error("%s: %s", path, rsa_wrap_strerror(rc));
	}
	secret->type = KR_SECRET_RSA;
	secret->bytes = buf;
	secret->len = (size_t)n;
	return 0;
}

static int key_file_read(const char *path, struct kr_secret *secret)
{
	unsigned char *key;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	_Static_assert(KDF_KEYFILE_LEN == SECMEM_KEY_LEN, "a key file is a secmem key");
	if (fd < 0)
		return cli_error("cannot read key file %s: %s", path, strerror(errno));
	n = secmem_read_key(fd, &key);
	close(fd);
	if (n == -EISDIR)
		return cli_error("key file %s is a directory: give the path of a 32-byte key file",
				 path);
	if (n < 0)
		return cli_error("cannot read key file %s: %s", path, strerror((int)-n));
	if (!key)
		return cli_error("key file %s must be exactly 32 bytes (it has %s%zd): make one with "
				 "'openssl rand -out FILE 32'",
				 path, n > KDF_KEYFILE_LEN ? "more than " : "", n > 32 ? 32 : n);
	secret->type = KR_SECRET_KEYFILE;
	secret->bytes = key;
	secret->len = KDF_KEYFILE_LEN;
	return 0;
}

/* The first line of a file: a passphrase or a PIN (what names it in messages). */
static int passphrase_file_read(const char *path, const char *what, struct kr_secret *secret)
{
	uint8_t *buf = secmem_alloc(PASSPHRASE_MAX);
	ssize_t n;
	int fd;

	if (!buf)
		return cli_error("out of secure memory");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		secmem_free(buf);
		return cli_error("cannot read %s file %s: %s", what, path, strerror(errno));
	}
	n = read_upto(fd, buf, PASSPHRASE_MAX);
	close(fd);
	if (n < 0) {
		secmem_free(buf);
		return cli_error("cannot read %s file %s: %s", what, path, strerror((int)-n));
	}
	return keysource_passphrase(buf, (size_t)n, path, secret);
}

/* Reads one line from the terminal with echo off. */
static ssize_t tty_read_hidden(int tty, const char *prompt, uint8_t *buf, size_t max)
{
	struct termios old, quiet;
	ssize_t n = 0;

	if (tcgetattr(tty, &old) != 0)
		return -errno;
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	/* Echo goes off before the prompt shows: an answer typed (or sent) at once is hidden. */
	tcsetattr(tty, TCSAFLUSH, &quiet);
	/* The prompt comes after the flush, so an answer typed as soon as it shows is kept. */
	(void)!write(tty, prompt, strlen(prompt));
	while ((size_t)n < max) {
		ssize_t r = read(tty, buf + n, 1);
		if (r <= 0 || buf[n] == '\n')
			break;
		n++;
	}
	tcsetattr(tty, TCSAFLUSH, &old);
	(void)!write(tty, "\n", 1);
	return n;
}

static int passphrase_prompt(int confirm, const char *prompt, struct kr_secret *secret)
{
	int tty = open("/dev/tty", O_RDWR | O_CLOEXEC);
	uint8_t *buf, *again;
	ssize_t n, m = 0;

	if (tty < 0)
		return cli_error("no key given and no terminal to ask on: use --key-file FILE or "
				 "--passphrase-file FILE");
	buf = secmem_alloc(PASSPHRASE_MAX);
	again = secmem_alloc(PASSPHRASE_MAX);
	if (!buf || !again) {
		close(tty);
		secmem_free(buf);
		secmem_free(again);
		return cli_error("out of secure memory");
	}
	n = tty_read_hidden(tty, prompt, buf, PASSPHRASE_MAX);
	if (confirm && n > 0)
		m = tty_read_hidden(tty, "Repeat passphrase: ", again, PASSPHRASE_MAX);
	close(tty);
	if (confirm && (m != n || sodium_memcmp(buf, again, (size_t)n) != 0)) {
		secmem_free(buf);
		secmem_free(again);
		return cli_error("the passphrases do not match; nothing was changed");
	}
	secmem_free(again);
	return keysource_passphrase(buf, n < 0 ? 0 : (size_t)n, "the terminal", secret);
}

/* The token's PIN: --pin-file, a credential (--pin-credential, or kekfs.pin), the terminal. */
static int pin_read(const struct secret_source *src, struct kr_secret *pin)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	char path[4096];
	int rc, tty;

	snprintf(path, sizeof(path), "%s/kekfs.pin", dir ? dir : "");
	if (src->pin_file)
		rc = passphrase_file_read(src->pin_file, "PIN", pin);
	else if (src->pin_credential || (dir && access(path, F_OK) == 0))
		rc = keysource_line_credential(
		    src->pin_credential ? src->pin_credential : "kekfs.pin", pin);
	else if ((tty = open("/dev/tty", O_RDWR | O_CLOEXEC)) >= 0)
		close(tty), rc = passphrase_prompt(0, "Token PIN: ", pin);
	else
		rc = cli_error("the token needs its PIN and there is no terminal to ask on: give "
			       "--pin-file FILE (or the credential kekfs.pin)");
	return rc;
}

/* An external slot's secret: the seal/open calls, the spec of a slot being added. */
struct ext_secret {
	struct kr_external x; /* first: secret->ext is what secret_free frees */
	char spec[KR_SPEC_MAX + 1];
};

static int external_fill(const struct secret_source *src, struct kr_secret *secret)
{
	struct ext_secret *e = calloc(1, sizeof(*e));
	int pkcs11 = src->pkcs11 || src->use_pkcs11;

	if (!e)
		return cli_error("out of memory");
	secret->type = pkcs11 ? KR_SECRET_PKCS11 : KR_SECRET_KMS;
	secret->ext = &e->x;
	if (src->pkcs11 && pkcs11_spec_check(src->pkcs11, e->x.msg, sizeof(e->x.msg)) != 0)
		return cli_error("%s", e->x.msg);
	if (src->pkcs11)
		snprintf(e->spec, sizeof(e->spec), "%s", src->pkcs11);
	if (src->kms_command && kms_spec_make(src->kms_command, src->kms_env, src->kms_nenv,
					      e->spec, sizeof(e->spec)) != 0)
		return -1;
	secret->spec = e->spec[0] ? e->spec : NULL;
	e->x.only = pkcs11 ? src->pkcs11_module : src->kms_plugin;
	if (!pkcs11) {
		kms_external(&e->x, src->key_command_timeout);
		return 0;
	}
	if (pin_read(src, secret) != 0)
		return -1;
	secret->type = KR_SECRET_PKCS11; /* pin_read called it a passphrase */
	pkcs11_external(&e->x, secret->bytes, secret->len);
	return 0;
}

static int external_read(const struct secret_source *src, struct kr_secret *secret)
{
	if (external_fill(src, secret) == 0)
		return 0;
	secret_free(secret);
	return -1;
}

int secret_source_auto(struct secret_source *src, const char *keyring_path)
{
	const unsigned mine =
	    1U << KR_SECRET_PASSPHRASE | 1U << KR_SECRET_KEYFILE | 1U << KR_SECRET_RSA;
	unsigned kinds = 0;

	if (src->key_file || src->passphrase_file || src->key_command || src->passphrase_command ||
	    src->credential || src->rsa_key || src->use_pkcs11 || src->use_kms)
		return 0;
	if (src->pin_file || src->pin_credential) { /* a PIN says which slot */
		src->use_pkcs11 = 1;
		return 0;
	}
	if (keyring_slot_kinds(keyring_path, &kinds) != KR_OK || (kinds & mine))
		return 0; /* keyring_load says what is wrong with it */
	if (kinds & 1U << KR_SECRET_PKCS11)
		return cli_error("the keyring %s has only token or KMS slots, and kekfs loads no "
				 "module a keyring names unless told to: give "
				 "--pkcs11-unlock=MODULE (mount -o pkcs11=MODULE), or "
				 "--pkcs11-unlock to use the one it names",
				 keyring_path);
	if (kinds & 1U << KR_SECRET_KMS)
		return cli_error("the keyring %s has only KMS plugin slots, and kekfs runs no "
				 "program a keyring names unless told to: give "
				 "--kms-unlock=PROGRAM (mount -o kms=PROGRAM), or --kms-unlock to "
				 "run the one it names",
				 keyring_path);
	return 0;
}

int secret_read(const struct secret_source *src, int confirm, struct kr_secret *secret)
{
	int rc;

	memset(secret, 0, sizeof(*secret));
	if (!!src->key_file + !!src->passphrase_file + !!src->key_command +
		!!src->passphrase_command + !!src->credential + !!src->rsa_key +
		!!(src->pkcs11 || src->use_pkcs11) + !!(src->kms_command || src->use_kms) >
	    1)
		return cli_error("give one key source (key file, passphrase file, key-command, "
				 "passphrase-command, credential, RSA key, PKCS#11 token or KMS "
				 "plugin), not several");
	if (src->pkcs11 || src->use_pkcs11 || src->kms_command || src->use_kms)
		return external_read(src, secret);
	if (src->key_file)
		return key_file_read(src->key_file, secret);
	if (src->rsa_key)
		return rsa_key_read(src->rsa_key, !src->rsa_public, secret);
	if (src->passphrase_file)
		return passphrase_file_read(src->passphrase_file, "passphrase", secret);
	if (src->key_command)
		return keysource_command(src->key_command, src->key_command_timeout, src->label,
					 secret);
	if (src->passphrase_command)
		return keysource_passphrase_command(src->passphrase_command,
						    src->key_command_timeout, src->label, secret);
	if (src->credential)
		return keysource_credential(src->credential, secret);
	/* Nothing given: what systemd handed over, else a person at a terminal or console. */
	rc = keysource_default_credential(secret);
	if (rc != 0)
		return rc < 0 ? -1 : 0;
	if (keysource_ask_password_wanted())
		return keysource_ask_password(src->label, secret);
	return passphrase_prompt(confirm, "Passphrase: ", secret);
}

void secret_free(struct kr_secret *secret)
{
	secmem_free((void *)secret->bytes);
	secret->bytes = NULL;
	secret->len = 0;
	free(secret->ext);
	secret->ext = NULL;
	secret->spec = NULL;
}
