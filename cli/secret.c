#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>

#include <sodium.h>
#include <unistd.h>

#include "../crypto/kdf.h"
#include "../crypto/rsa_wrap.h"

#include "../crypto/secmem.h"
#include "cli.h"
#include "keysource.h"

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
	uint8_t *buf = secmem_alloc(KDF_KEYFILE_LEN + 1);
	struct stat st;
	ssize_t n;
	int fd;

	if (!buf)
		return cli_error("out of secure memory");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		secmem_free(buf);
		return cli_error("cannot read key file %s: %s", path, strerror(errno));
	}
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		close(fd);
		secmem_free(buf);
		return cli_error("key file %s is a directory: give the path of a 32-byte key file",
				 path);
	}
	n = read_upto(fd, buf, KDF_KEYFILE_LEN + 1);
	close(fd);
	if (n != KDF_KEYFILE_LEN) {
		secmem_free(buf);
		if (n < 0)
			return cli_error("cannot read key file %s: %s", path, strerror((int)-n));
		return cli_error(
		    "key file %s must be exactly 32 bytes (it has %s%zd): make one with "
		    "'openssl rand -out FILE 32'",
		    path, n > KDF_KEYFILE_LEN ? "more than " : "", n > 32 ? 32 : n);
	}
	secret->type = KR_SECRET_KEYFILE;
	secret->bytes = buf;
	secret->len = KDF_KEYFILE_LEN;
	return 0;
}

/* Keeps the first line, without its newline: what 'echo pass > file' produces. */
static int passphrase_finish(uint8_t *buf, ssize_t n, struct kr_secret *secret, const char *from)
{
	size_t len = 0;

	while (len < (size_t)n && buf[len] != '\n' && buf[len] != '\r')
		len++;
	if (len == 0) {
		secmem_free(buf);
		return cli_error("the passphrase from %s is empty", from);
	}
	secret->type = KR_SECRET_PASSPHRASE;
	secret->bytes = buf;
	secret->len = len;
	return 0;
}

static int passphrase_file_read(const char *path, struct kr_secret *secret)
{
	uint8_t *buf = secmem_alloc(PASSPHRASE_MAX);
	ssize_t n;
	int fd;

	if (!buf)
		return cli_error("out of secure memory");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		secmem_free(buf);
		return cli_error("cannot read passphrase file %s: %s", path, strerror(errno));
	}
	n = read_upto(fd, buf, PASSPHRASE_MAX);
	close(fd);
	if (n < 0) {
		secmem_free(buf);
		return cli_error("cannot read passphrase file %s: %s", path, strerror((int)-n));
	}
	return passphrase_finish(buf, n, secret, path);
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

static int passphrase_prompt(int confirm, struct kr_secret *secret)
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
	n = tty_read_hidden(tty, "Passphrase: ", buf, PASSPHRASE_MAX);
	if (confirm && n > 0)
		m = tty_read_hidden(tty, "Repeat passphrase: ", again, PASSPHRASE_MAX);
	close(tty);
	if (confirm && (m != n || sodium_memcmp(buf, again, (size_t)n) != 0)) {
		secmem_free(buf);
		secmem_free(again);
		return cli_error("the passphrases do not match; nothing was changed");
	}
	secmem_free(again);
	return passphrase_finish(buf, n < 0 ? 0 : n, secret, "the terminal");
}

int secret_read(const struct secret_source *src, int confirm, struct kr_secret *secret)
{
	int rc;

	memset(secret, 0, sizeof(*secret));
	if (!!src->key_file + !!src->passphrase_file + !!src->key_command + !!src->credential +
		!!src->rsa_key >
	    1)
		return cli_error("give one key source (key file, passphrase file, key-command or "
				 "credential), not several");
	if (src->key_file)
		return key_file_read(src->key_file, secret);
	if (src->rsa_key)
		return rsa_key_read(src->rsa_key, !src->rsa_public, secret);
	if (src->passphrase_file)
		return passphrase_file_read(src->passphrase_file, secret);
	if (src->key_command)
		return keysource_command(src->key_command, src->key_command_timeout, src->label,
					 secret);
	if (src->credential)
		return keysource_credential(src->credential, secret);
	/* Nothing given: what systemd handed over, else a person at a terminal or console. */
	rc = keysource_default_credential(secret);
	if (rc != 0)
		return rc < 0 ? -1 : 0;
	if (keysource_ask_password_wanted())
		return keysource_ask_password(src->label, secret);
	return passphrase_prompt(confirm, secret);
}

void secret_free(struct kr_secret *secret)
{
	secmem_free((void *)secret->bytes);
	secret->bytes = NULL;
	secret->len = 0;
}
