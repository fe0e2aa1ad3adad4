/*
 * Unattended key sources. A key-command is how users plug in what kekfs does not know (a
 * cloud KMS, Vault, clevis/tang, a TPM): it is run without a shell, so no quoting or
 * injection through a mount option, with a timeout so a hung KMS cannot hang the boot, and
 * its output is read straight into secure memory and wiped after use.
 */
#include "keysource.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "../crypto/kdf.h"
#include "../crypto/secmem.h"
#include "cli.h"
#include "spawn.h"

#define KEY_OUTPUT_MAX 130   /* 64 hex characters and a newline, with room to see more */
#define PASS_OUTPUT_MAX 1024 /* as for a passphrase file */
#define ARGV_MAX 32
#define ASK_PASSWORD "/usr/bin/systemd-ask-password"
#define ASK_TIMEOUT 90 /* systemd-ask-password's own default */

/* Runs argv with stdin on /dev/null and stderr passing through; output into buf. */
static int run_capture(char *const argv[], char *const envp[], int timeout_s, const char *what,
		       uint8_t *buf, size_t max, struct spawn_result *r)
{
	struct spawn_io io = {.out = buf, .out_max = max};
	char msg[4400];

	if (spawn_run(argv, envp, timeout_s, &io, r) != 0)
		return cli_error("cannot start %s: %s", what, strerror(errno));
	if (spawn_verdict(what, &io, r, timeout_s, msg, sizeof(msg)) != 0)
		return cli_error("%s", msg);
	return 0;
}

/* 32 raw bytes, or 64 hex characters with at most one trailing newline, become the key. */
static int key_from_bytes(uint8_t *buf, size_t len, int overflow, const char *what,
			  struct kr_secret *secret)
{
	uint8_t *key;
	size_t hexlen = len, bin = 0;

	if (hexlen > 0 && buf[hexlen - 1] == '\n')
		hexlen--;
	if (!overflow && len != KDF_KEYFILE_LEN && hexlen != 2 * KDF_KEYFILE_LEN)
		return cli_error("%s gave %s%zu bytes: it must give a 32-byte key or 64 hex "
				 "characters",
				 what, overflow ? "more than " : "", len);
	if (overflow)
		return cli_error("%s gave more than %zu bytes: it must give a 32-byte key or 64 "
				 "hex characters",
				 what, len);
	key = secmem_alloc(KDF_KEYFILE_LEN);
	if (!key)
		return cli_error("out of secure memory");
	if (len == KDF_KEYFILE_LEN)
		memcpy(key, buf, KDF_KEYFILE_LEN);
	else if (sodium_hex2bin(key, KDF_KEYFILE_LEN, (const char *)buf, hexlen, NULL, &bin,
				NULL) != 0 ||
		 bin != KDF_KEYFILE_LEN) {
		secmem_free(key);
		return cli_error("%s gave 64 characters that are not hex: it must give a 32-byte "
				 "key or 64 hex characters",
				 what);
	}
	secret->type = KR_SECRET_KEYFILE;
	secret->bytes = key;
	secret->len = KDF_KEYFILE_LEN;
	return 0;
}

/* Splits CMD (the option NAME) on spaces into argv (pointing into copy); the program must be
 * absolute. */
static int split_command(const char *name, const char *cmd, char *copy, size_t size, char **argv)
{
	char *save = NULL;
	int n = 0;

	if (strlen(cmd) >= size)
		return cli_error("%s is too long", name);
	strcpy(copy, cmd);
	for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		if (n == ARGV_MAX - 1)
			return cli_error("%s has more than %d arguments", name, ARGV_MAX - 2);
		argv[n++] = w;
	}
	argv[n] = NULL;
	if (n == 0 || argv[0][0] != '/')
		return cli_error("%s must start with an absolute path (it is run without a "
				 "shell), not '%s'",
				 name, cmd);
	if (access(argv[0], X_OK) != 0)
		return cli_error("cannot run %s %s: %s", name, argv[0], strerror(errno));
	return 0;
}

/* The environment a key-command gets: a fixed PATH, the volume, and systemd's credentials. */
static void command_env(char **envp, char *backing_var, size_t bsize, char *cred_var, size_t csize,
			const char *label)
{
	const char *cred = getenv("CREDENTIALS_DIRECTORY");
	int n = 0;

	envp[n++] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	envp[n++] = "LC_ALL=C";
	if (label) {
		snprintf(backing_var, bsize, "KEKFS_BACKING=%s", label);
		envp[n++] = backing_var;
	}
	if (cred) {
		snprintf(cred_var, csize, "CREDENTIALS_DIRECTORY=%s", cred);
		envp[n++] = cred_var;
	}
	envp[n] = NULL;
}

/* Runs the program CMD given as option NAME, its output (at most max bytes) into buf; what
 * names it in messages. 0, or -1 after one line. */
static int run_key_program(const char *name, const char *cmd, int timeout_s, const char *label,
			   uint8_t *buf, size_t max, char *what, size_t what_size,
			   struct spawn_result *r)
{
	char copy[4096], backing_var[4200], cred_var[4200];
	char *argv[ARGV_MAX], *envp[5];

	if (timeout_s <= 0)
		timeout_s = KEY_COMMAND_TIMEOUT;
	if (split_command(name, cmd, copy, sizeof(copy), argv) != 0)
		return -1;
	command_env(envp, backing_var, sizeof(backing_var), cred_var, sizeof(cred_var), label);
	snprintf(what, what_size, "%s %s", name, argv[0]);
	return run_capture(argv, envp, timeout_s, what, buf, max, r);
}

int keysource_command(const char *cmd, int timeout_s, const char *label, struct kr_secret *secret)
{
	char what[4200];
	struct spawn_result r;
	uint8_t *buf = secmem_alloc(KEY_OUTPUT_MAX);
	int rc;

	if (!buf)
		return cli_error("out of secure memory");
	rc = run_key_program("key-command", cmd, timeout_s, label, buf, KEY_OUTPUT_MAX, what,
			     sizeof(what), &r);
	if (rc == 0)
		rc = key_from_bytes(buf, r.out_len, r.overflow, what, secret);
	secmem_free(buf); /* wipes the output: only the parsed key lives on */
	return rc;
}

int keysource_passphrase_command(const char *cmd, int timeout_s, const char *label,
				 struct kr_secret *secret)
{
	char what[4200];
	struct spawn_result r;
	uint8_t *buf = secmem_alloc(PASS_OUTPUT_MAX);

	if (!buf)
		return cli_error("out of secure memory");
	if (run_key_program("passphrase-command", cmd, timeout_s, label, buf, PASS_OUTPUT_MAX, what,
			    sizeof(what), &r) != 0) {
		secmem_free(buf);
		return -1;
	}
	if (r.overflow) {
		secmem_free(buf);
		return cli_error("%s printed more than %d bytes: it must print one passphrase",
				 what, PASS_OUTPUT_MAX);
	}
	return keysource_passphrase(buf, r.out_len, what, secret); /* takes buf over */
}

/* Reads a credential file into secure memory; *len is its size. */
static uint8_t *credential_read(const char *name, size_t max, size_t *len, int *overflow)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	char path[4096];
	uint8_t *buf;
	ssize_t n;
	int fd;

	if (!dir)
		return cli_error("credential=%s given but $CREDENTIALS_DIRECTORY is not set "
				 "(use LoadCredential= in the unit)",
				 name),
		       NULL;
	if (strchr(name, '/') || !name[0])
		return cli_error("credential name '%s' must not be empty or contain '/'", name),
		       NULL;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cli_error("cannot read credential %s: %s", path, strerror(errno)), NULL;
	buf = secmem_alloc(max + 1);
	if (!buf) {
		close(fd);
		return cli_error("out of secure memory"), NULL;
	}
	*len = 0;
	while (*len <= max && (n = read(fd, buf + *len, max + 1 - *len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			cli_error("cannot read credential %s: %s", path, strerror(errno));
			close(fd);
			secmem_free(buf);
			return NULL;
		}
		*len += (size_t)n;
	}
	close(fd);
	*overflow = *len > max;
	if (*overflow)
		*len = max;
	return buf;
}

int keysource_credential(const char *name, struct kr_secret *secret)
{
	char what[300];
	size_t len;
	int overflow, rc;
	uint8_t *buf = credential_read(name, KEY_OUTPUT_MAX, &len, &overflow);

	if (!buf)
		return -1;
	snprintf(what, sizeof(what), "credential %.200s", name);
	rc = key_from_bytes(buf, len, overflow, what, secret);
	secmem_free(buf);
	return rc;
}

int keysource_passphrase(uint8_t *buf, size_t len, const char *what, struct kr_secret *secret)
{
	size_t n = 0;

	while (n < len && buf[n] != '\n' && buf[n] != '\r')
		n++;
	if (n == 0) {
		secmem_free(buf);
		return cli_error("the passphrase from %s is empty", what);
	}
	secret->type = KR_SECRET_PASSPHRASE;
	secret->bytes = buf;
	secret->len = n;
	return 0;
}

int keysource_line_credential(const char *name, struct kr_secret *secret)
{
	char what[300];
	size_t len;
	int overflow;
	uint8_t *buf = credential_read(name, PASS_OUTPUT_MAX, &len, &overflow);

	if (!buf)
		return -1;
	snprintf(what, sizeof(what), "credential %.200s", name);
	return keysource_passphrase(buf, len, what, secret);
}

int keysource_default_credential(struct kr_secret *secret)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	char path[4096];

	if (!dir)
		return 0;
	snprintf(path, sizeof(path), "%s/kekfs.key", dir);
	if (access(path, F_OK) == 0)
		return keysource_credential("kekfs.key", secret) == 0 ? 1 : -1;
	snprintf(path, sizeof(path), "%s/kekfs.passphrase", dir);
	if (access(path, F_OK) != 0)
		return 0;
	return keysource_line_credential("kekfs.passphrase", secret) == 0 ? 1 : -1;
}

int keysource_ask_password_wanted(void)
{
	int tty = open("/dev/tty", O_RDWR | O_CLOEXEC);

	if (tty >= 0) {
		close(tty);
		return 0;
	}
	return getenv("INVOCATION_ID") != NULL && access(ASK_PASSWORD, X_OK) == 0;
}

int keysource_ask_password(const char *label, struct kr_secret *secret)
{
	char id[4200], msg[4200];
	char *argv[] = {ASK_PASSWORD,
			"--no-tty",
			"--timeout="
			"90",
			id,
			msg,
			NULL};
	char *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL};
	struct spawn_result r;
	uint8_t *buf = secmem_alloc(PASS_OUTPUT_MAX);
	int rc;

	if (!buf)
		return cli_error("out of secure memory");
	snprintf(id, sizeof(id), "--id=kekfs:%s", label ? label : "");
	snprintf(msg, sizeof(msg), "Passphrase for kekfs volume %s:", label ? label : "");
	rc = run_capture(argv, envp, ASK_TIMEOUT + 5, "systemd-ask-password", buf, PASS_OUTPUT_MAX,
			 &r);
	if (rc != 0) {
		secmem_free(buf);
		return -1;
	}
	return keysource_passphrase(buf, r.out_len, "systemd-ask-password", secret);
}
