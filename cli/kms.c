/*
 * A KMS plugin is run as PROG ARGS wrap|unwrap, without a shell, with a small environment
 * and a deadline. Keys cross the pipe as one line of base64, so plugins can be a few lines
 * of shell; the sealed blob is whatever text the plugin printed (stored in the slot).
 */
#include "kms.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "../crypto/secmem.h"
#include "cli.h"
#include "spawn.h"

#define KMS_ARGV_MAX 32
#define KMS_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define KMS_KEY_B64 45	   /* 32 bytes in base64 with padding, and its NUL */
#define KMS_UNWRAP_OUT 256 /* room to see that a plugin printed more than a key */
#define KMS_ERR_TAIL 2048

static int kms_fail(struct kr_external *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int kms_fail(struct kr_external *x, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(x->msg, sizeof(x->msg), fmt, ap);
	va_end(ap);
	return -1;
}

/*
 * Splits a command line into words (in copy): blanks separate them; a word that begins with
 * ' or " runs to the next same quote (which must end the word) and loses both quotes; any
 * other character, quotes inside a word included, is itself. The count, or -1.
 */
static int split_words(const char *line, char *copy, char **argv, int max)
{
	int n = 0;
	char *o = copy;

	for (;;) {
		char quote = 0;

		while (*line == ' ' || *line == '\t')
			line++;
		if (!*line)
			break;
		if (n == max - 1)
			return -1;
		argv[n++] = o;
		if (*line == '\'' || *line == '"')
			quote = *line++;
		while (*line && (quote ? *line != quote : (*line != ' ' && *line != '\t')))
			*o++ = *line++;
		*o++ = '\0';
		if (quote && *line++ != quote)
			return -1; /* unterminated */
		if (quote && *line && *line != ' ' && *line != '\t')
			return -1; /* text after the closing quote */
	}
	argv[n] = NULL;
	return n;
}

/* PROG as an absolute path: itself if it has a '/', else found in KMS_PATH. */
static int find_program(const char *prog, char *out, size_t size)
{
	const char *dir = KMS_PATH;

	if (strchr(prog, '/')) {
		snprintf(out, size, "%s", prog);
		return prog[0] == '/' && access(prog, X_OK) == 0 ? 0 : -1;
	}
	while (*dir) {
		size_t len = strcspn(dir, ":");

		snprintf(out, size, "%.*s/%s", (int)len, dir, prog);
		if (access(out, X_OK) == 0)
			return 0;
		dir += len + (dir[len] == ':');
	}
	snprintf(out, size, "%s", prog);
	return -1;
}

int kms_spec_make(const char *command, const char *const *env, int n_env, char *spec, size_t size)
{
	char copy[KR_SPEC_MAX + 1], prog[1024], *argv[KMS_ARGV_MAX];
	const char *rest;
	size_t used;

	if (strlen(command) > KR_SPEC_MAX || strchr(command, '\n') ||
	    split_words(command, copy, argv, KMS_ARGV_MAX) < 1)
		return cli_error("--kms-command '%.200s' is not a command line: PROG [ARGS], with "
				 "'...' or \"...\" around a whole argument that has spaces",
				 command);
	if (strchr("'\"", command[strspn(command, " \t")]))
		return cli_error("--kms-command: the program name must not be quoted");
	if (find_program(argv[0], prog, sizeof(prog)) != 0)
		return cli_error("KMS plugin %s not found or not executable: give its absolute "
				 "path, or install it in %s",
				 prog, KMS_PATH);
	rest = command + strspn(command, " \t");
	rest += strcspn(rest, " \t");
	used = (size_t)snprintf(spec, size, "%s%s", prog, rest);
	for (int i = 0; i < n_env && used < size; i++) {
		if (!env[i][0] ||
		    strspn(env[i], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				   "0123456789_") != strlen(env[i]))
			return cli_error(
			    "--kms-env '%s' is not the name of an environment variable", env[i]);
		used += (size_t)snprintf(spec + used, size - used, "\n%s", env[i]);
	}
	if (used >= size || used > KR_SPEC_MAX)
		return cli_error("--kms-command and --kms-env are too long for a slot");
	return 0;
}

/* Adds NAME=value from our environment to envp if it is set; vars holds the strings. */
static void env_pass(const char *name, char **envp, int *n, char *vars, size_t *used, size_t size)
{
	const char *v = getenv(name);
	int len;

	if (!v || *used >= size)
		return;
	len = snprintf(vars + *used, size - *used, "%s=%s", name, v);
	if (len < 0 || (size_t)len >= size - *used)
		return;
	envp[(*n)++] = vars + *used;
	*used += (size_t)len + 1;
}

/* The plugin's environment: PATH, HOME, LANG, the protocol version, the slot's names. */
static void plugin_env(char *names, char **envp, char *vars, size_t size)
{
	static const char *const base[] = {"HOME", "LANG", "CREDENTIALS_DIRECTORY"};
	size_t used = 0;
	int n = 0;

	envp[n++] = "PATH=" KMS_PATH;
	envp[n++] = "KEKFS_KMS_PROTOCOL=1";
	for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++)
		env_pass(base[i], envp, &n, vars, &used, size);
	for (char *save = NULL, *name = strtok_r(names, "\n", &save); name && n < KMS_ENV_MAX + 5;
	     name = strtok_r(NULL, "\n", &save))
		env_pass(name, envp, &n, vars, &used, size);
	envp[n] = NULL;
}

/* Runs the slot's plugin with verb; io carries stdin and the stdout buffer. */
static int kms_run(struct kr_external *x, const char *spec, const char *verb, struct spawn_io *io,
		   struct spawn_result *r)
{
	char line[KR_SPEC_MAX + 1], copy[KR_SPEC_MAX + 1], vars[8192], what[1200],
	    err[KMS_ERR_TAIL];
	char *argv[KMS_ARGV_MAX + 1], *envp[KMS_ENV_MAX + 6], *names;
	int n;

	snprintf(line, sizeof(line), "%s", spec);
	names = strchr(line, '\n'); /* the lines after the command: variable names */
	if (names)
		*names++ = '\0';
	else
		names = line + strlen(line);
	n = split_words(line, copy, argv, KMS_ARGV_MAX);
	if (n < 1)
		return kms_fail(x, "the KMS slot's command is damaged");
	/* The spec comes from the keyring, which is read before its MAC can be checked. */
	if (x->only && strcmp(argv[0], x->only) != 0)
		return kms_fail(x,
				"the keyring's KMS slot names a plugin other than %s: not run "
				"(check the keyring, or name its plugin)",
				x->only);
	argv[n] = (char *)verb;
	argv[n + 1] = NULL;
	snprintf(what, sizeof(what), "KMS plugin %s %s", argv[0], verb);
	if (access(argv[0], X_OK) != 0)
		return kms_fail(x,
				"KMS plugin %s not found or not executable (%s): install it, it "
				"is what this slot runs",
				argv[0], strerror(errno));
	plugin_env(names, envp, vars, sizeof(vars));
	io->err = err;
	io->err_max = sizeof(err);
	if (spawn_run(argv, envp, x->timeout_s, io, r) != 0)
		return kms_fail(x, "cannot start %s: %s", what, strerror(errno));
	if (spawn_verdict(what, io, r, x->timeout_s, x->msg, sizeof(x->msg)) != 0)
		return -1;
	while (r->out_len > 0 && strchr("\n\r \t", io->out[r->out_len - 1]))
		r->out_len--;
	if (r->overflow || r->out_len == 0 || memchr(io->out, 0, r->out_len))
		return kms_fail(x, "%s printed %s: it must print one line of text", what,
				r->overflow  ? "too much"
				: r->out_len ? "a NUL byte"
					     : "nothing");
	return 0;
}

static int kms_seal(struct kr_external *x, const char *spec, const uint8_t key[32], uint8_t *blob,
		    size_t *blob_len)
{
	char *in = secmem_alloc(KMS_KEY_B64 + 1);
	uint8_t *out = secmem_alloc(*blob_len);
	struct spawn_io io = {.in = (const uint8_t *)in, .out = out, .out_max = *blob_len};
	struct spawn_result r;
	int rc = -1;

	if (in && out) {
		sodium_bin2base64(in, KMS_KEY_B64, key, 32, sodium_base64_VARIANT_ORIGINAL);
		strcat(in, "\n");
		io.in_len = strlen(in);
		rc = kms_run(x, spec, "wrap", &io, &r);
		if (rc == 0) {
			memcpy(blob, out, r.out_len);
			*blob_len = r.out_len;
		}
	} else {
		kms_fail(x, "out of secure memory");
	}
	secmem_free(in);
	secmem_free(out);
	return rc;
}

static int kms_open(struct kr_external *x, const char *spec, const uint8_t *blob, size_t blob_len,
		    uint8_t key[32])
{
	uint8_t *out = secmem_alloc(KMS_UNWRAP_OUT);
	struct spawn_io io = {
	    .in = blob, .in_len = blob_len, .out = out, .out_max = KMS_UNWRAP_OUT};
	struct spawn_result r;
	size_t bin = 0;
	int rc = -1;

	if (out) {
		rc = kms_run(x, spec, "unwrap", &io, &r); /* the blob as stored: no newline */
		if (rc == 0 && (sodium_base642bin(key, 32, (const char *)out, r.out_len, NULL, &bin,
						  NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
				bin != 32))
			rc = kms_fail(x,
				      "KMS plugin %.*s unwrap printed something that is not a "
				      "32-byte key in base64",
				      (int)strcspn(spec, " \n"), spec);
	} else {
		kms_fail(x, "out of secure memory");
	}
	secmem_free(out);
	return rc;
}

void kms_external(struct kr_external *x, int timeout_s)
{
	x->seal = kms_seal;
	x->open = kms_open;
	x->timeout_s = timeout_s > 0 ? timeout_s : KMS_TIMEOUT;
	x->msg[0] = '\0';
}
