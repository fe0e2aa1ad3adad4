/* The options that unlock a volume or name a PKCS#11 token or a KMS plugin, shared by every
 * command that takes them. */
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
	OPT_KEY_FILE,
	OPT_PASSPHRASE_FILE,
	OPT_RSA_PRIVATE,
	OPT_KEYRING,
	OPT_ALLOW_ROLLBACK,
	OPT_PASSPHRASE_COMMAND,
};

#define EXTERNAL_OPTIONS                                                                           \
	{"pkcs11", required_argument, NULL, OPT_PKCS11},                                           \
	    {"pkcs11-unlock", optional_argument, NULL, OPT_PKCS11_UNLOCK},                         \
	    {"pin-file", required_argument, NULL, OPT_PIN_FILE},                                   \
	    {"pin-credential", required_argument, NULL, OPT_PIN_CREDENTIAL},                       \
	    {"kms-command", required_argument, NULL, OPT_KMS_COMMAND},                             \
	    {"kms-env", required_argument, NULL, OPT_KMS_ENV},                                     \
	    {"kms-unlock", optional_argument, NULL, OPT_KMS_UNLOCK},                               \
	{                                                                                          \
		"kms-timeout", required_argument, NULL, OPT_KMS_TIMEOUT                            \
	}

/*
 * Applies option c to src (how to unlock) and add (a slot being added; NULL where no slot
 * is added). The PIN and the timeout apply to both. 0, or -1 (unknown, or after a message).
 */
int external_option(int c, const char *arg, struct secret_source *src, struct secret_source *add);

/* mount -o pkcs11[=MODULE], pinfile=F, pin-credential=NAME, kms[=PROGRAM], kms-timeout=S,
 * allow-rollback: 1 if opt is one, 0 if not, -1 after a message. */
int external_mount_option(const char *opt, struct secret_source *src);

/* The options of every command that unlocks a volume itself: one table, one parser
 * (unlock_option), so no command lacks one of them. */
#define UNLOCK_OPTIONS                                                                             \
	{"key-file", required_argument, NULL, OPT_KEY_FILE},                                       \
	    {"passphrase-file", required_argument, NULL, OPT_PASSPHRASE_FILE},                     \
	    {"passphrase-command", required_argument, NULL, OPT_PASSPHRASE_COMMAND},               \
	    {"rsa-private", required_argument, NULL, OPT_RSA_PRIVATE},                             \
	    {"keyring", required_argument, NULL, OPT_KEYRING},                                     \
	    {"allow-rollback", no_argument, NULL, OPT_ALLOW_ROLLBACK}, EXTERNAL_OPTIONS

/* Their help text, for commands that unlock a volume they are given unmounted. */
#define UNLOCK_USAGE                                                                               \
	"  --key-file FILE, --passphrase-file FILE, --rsa-private PEM, --keyring PATH,\n"          \
	"  --pkcs11-unlock[=MODULE], --kms-unlock[=PROGRAM], --pin-file FILE,\n"                   \
	"  --pin-credential NAME, --kms-timeout SECONDS, --allow-rollback,\n"                      \
	"  --passphrase-command 'PROG [ARGS]' (prints the passphrase)\n"                           \
	"                           unlock an unmounted volume, as for mount\n"

/*
 * Takes getopt_long's option c (and its argument) if it is one of UNLOCK_OPTIONS: into src and
 * *keyring, and the PIN and timeout options into add too when it is not NULL (a slot being
 * added). 1 if taken, 0 if c is none of them, -1 if its value is bad or it names a slot to
 * add where add is NULL.
 */
int unlock_option(int c, const char *arg, struct secret_source *src, struct secret_source *add,
		  const char **keyring);

#endif
