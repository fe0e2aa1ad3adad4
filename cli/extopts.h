/* The options that name a PKCS#11 token or a KMS plugin, shared by kekfs mount and keys. */
#ifndef KEKFS_EXTOPTS_H
#define KEKFS_EXTOPTS_H

#include <getopt.h>

#include "secret.h"

enum external_opt {
	OPT_PKCS11 = 0x100, /* past every short option */
	OPT_PKCS11_UNLOCK,
	OPT_PIN_FILE,
	OPT_PIN_CREDENTIAL,
	OPT_KMS_COMMAND,
	OPT_KMS_ENV,
	OPT_KMS_UNLOCK,
	OPT_KMS_TIMEOUT,
};

#define EXTERNAL_OPTIONS                                                                           \
	{"pkcs11", required_argument, NULL, OPT_PKCS11},                                           \
	    {"pkcs11-unlock", no_argument, NULL, OPT_PKCS11_UNLOCK},                               \
	    {"pin-file", required_argument, NULL, OPT_PIN_FILE},                                   \
	    {"pin-credential", required_argument, NULL, OPT_PIN_CREDENTIAL},                       \
	    {"kms-command", required_argument, NULL, OPT_KMS_COMMAND},                             \
	    {"kms-env", required_argument, NULL, OPT_KMS_ENV},                                     \
	    {"kms-unlock", no_argument, NULL, OPT_KMS_UNLOCK},                                     \
	{                                                                                          \
		"kms-timeout", required_argument, NULL, OPT_KMS_TIMEOUT                            \
	}

/*
 * Applies option c to src (how to unlock) and add (a slot being added; NULL where no slot
 * is added). The PIN and the timeout apply to both. 0, or -1 (unknown, or after a message).
 */
int external_option(int c, const char *arg, struct secret_source *src, struct secret_source *add);

/* mount -o pkcs11, pinfile=F, pin-credential=NAME, kms, kms-timeout=S: 1 if opt is one, 0
 * if not, -1 after a message. */
int external_mount_option(const char *opt, struct secret_source *src);

#endif
