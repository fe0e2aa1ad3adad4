#include "extopts.h"

#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kms.h"

static int timeout_arg(const char *arg)
{
	char *end;
	long s = strtol(arg, &end, 10);

	if (*end || s < 1 || s > 3600)
		return cli_error("--kms-timeout must be 1 to 3600 seconds, not '%s'", arg);
	return (int)s;
}

/*
 * --kms-unlock=PROGRAM, -o pkcs11=MODULE: local configuration naming what a slot may run or
 * load. Compared with the slot's spec byte for byte, so it must be absolute as specs are.
 */
static int named_external(const char *what, const char *path, const char **out)
{
	if (!path)
		return 0;
	if (path[0] != '/')
		return cli_error("%s=%s: name it by its absolute path, as the keyring's slot does "
				 "('kekfs keys slots' shows it)",
				 what, path);
	*out = path;
	return 0;
}

/* The options that only make sense when a slot is being added. */
static int add_option(int c, const char *arg, struct secret_source *add)
{
	if (!add)
		return -1;
	if (c == OPT_PKCS11)
		add->pkcs11 = arg;
	else if (c == OPT_KMS_COMMAND)
		add->kms_command = arg;
	else if (add->kms_nenv == KMS_ENV_MAX)
		return cli_error("at most %d --kms-env variables", KMS_ENV_MAX);
	else
		add->kms_env[add->kms_nenv++] = arg;
	return 0;
}

int external_option(int c, const char *arg, struct secret_source *src, struct secret_source *add)
{
	struct secret_source *both[2] = {src, add};
	int t = 0;

	if (c == OPT_PKCS11 || c == OPT_KMS_COMMAND || c == OPT_KMS_ENV)
		return add_option(c, arg, add);
	if (c == OPT_PKCS11_UNLOCK) {
		src->use_pkcs11 = 1;
		return named_external("--pkcs11-unlock", arg, &src->pkcs11_module);
	}
	if (c == OPT_KMS_UNLOCK) {
		src->use_kms = 1;
		return named_external("--kms-unlock", arg, &src->kms_plugin);
	}
	if (c != OPT_PIN_FILE && c != OPT_PIN_CREDENTIAL && c != OPT_KMS_TIMEOUT)
		return -1;
	if (c == OPT_KMS_TIMEOUT && (t = timeout_arg(arg)) < 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		if (!both[i])
			continue;
		if (c == OPT_PIN_FILE)
			both[i]->pin_file = arg;
		else if (c == OPT_PIN_CREDENTIAL)
			both[i]->pin_credential = arg;
		else if (c == OPT_KMS_TIMEOUT)
			both[i]->key_command_timeout = t;
	}
	return 0;
}

int unlock_option(int c, const char *arg, struct secret_source *src, struct secret_source *add,
		  const char **keyring)
{
	switch (c) {
	case OPT_KEY_FILE:
		src->key_file = arg;
		return 1;
	case OPT_PASSPHRASE_FILE:
		src->passphrase_file = arg;
		return 1;
	case OPT_PASSPHRASE_COMMAND:
		src->passphrase_command = arg;
		return 1;
	case OPT_RSA_PRIVATE:
		src->rsa_key = arg;
		return 1;
	case OPT_KEYRING:
		*keyring = arg;
		return 1;
	case OPT_ALLOW_ROLLBACK:
		src->allow_rollback = 1;
		return 1;
	default:
		if (c < OPT_PKCS11 || c > OPT_KMS_TIMEOUT)
			return 0;
		return external_option(c, arg, src, add) == 0 ? 1 : -1;
	}
}

/* -o NAME or -o NAME=PATH (pkcs11, kms): 1 if opt is it, 0 if not, -1 after a message. */
static int mount_named(const char *opt, const char *name, int *use, const char **path)
{
	size_t n = strlen(name);

	if (strncmp(opt, name, n) != 0 || (opt[n] && opt[n] != '='))
		return 0;
	*use = 1;
	return named_external(name, opt[n] ? opt + n + 1 : NULL, path) == 0 ? 1 : -1;
}

int external_mount_option(const char *opt, struct secret_source *src)
{
	int rc = mount_named(opt, "pkcs11", &src->use_pkcs11, &src->pkcs11_module);

	if (rc == 0)
		rc = mount_named(opt, "kms", &src->use_kms, &src->kms_plugin);
	if (rc != 0)
		return rc;
	if (strcmp(opt, "allow-rollback") == 0)
		src->allow_rollback = 1;
	else if (strncmp(opt, "pinfile=", 8) == 0)
		src->pin_file = opt + 8;
	else if (strncmp(opt, "pin-credential=", 15) == 0)
		src->pin_credential = opt + 15;
	else if (strncmp(opt, "kms-timeout=", 12) == 0)
		return (src->key_command_timeout = timeout_arg(opt + 12)) < 0 ? -1 : 1;
	else
		return 0;
	return 1;
}
