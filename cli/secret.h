/* Reading a root secret the way a person gives it: key file, passphrase file or prompt. */
#ifndef KEKFS_SECRET_H
#define KEKFS_SECRET_H

#include "../keyring/keyring.h"

/* Where the secret comes from; at most one of the sources is set. */
struct secret_source {
	const char *key_file;
	const char *passphrase_file;
	const char *key_command;	/* a program that prints the key (see keysource.h) */
	const char *passphrase_command; /* a program that prints the passphrase */
	int key_command_timeout;	/* seconds; 0 = the default */
	const char *credential;		/* a systemd credential name in $CREDENTIALS_DIRECTORY */
	const char *label;		/* what to name in a password prompt (the backing dir) */
	const char *rsa_key;  /* a PEM RSA-4096 key: private to unlock, public to add a slot */
	int rsa_public;	      /* rsa_key is meant to be a public key (adding a slot) */
	const char *pkcs11;   /* a PKCS#11 spec: the token slot to add (keys add-slot) */
	int use_pkcs11;	      /* unlock with the keyring's PKCS#11 slot */
	const char *pin_file; /* the token's PIN: the first line of this file */
	const char *pin_credential; /* or this systemd credential (default: kekfs.pin) */
	const char *kms_command;    /* a KMS plugin command: the slot to add */
	const char *kms_env[8];	    /* names of variables the plugin gets (KMS_ENV_MAX) */
	int kms_nenv;
	int use_kms; /* unlock with the keyring's KMS plugin slot */

	/* Local configuration naming what a token or KMS slot may load or run (NULL: the slot's
	 * own, when use_pkcs11 or use_kms asks for it). */
	const char *pkcs11_module;
	const char *kms_plugin;
	int allow_rollback; /* accept a keyring older than this host or volume has seen */
};

/*
 * Fills secret (bytes in secure memory) from the source. When none is given: a systemd
 * credential kekfs.key or kekfs.passphrase, else a prompt on the terminal (twice when confirm
 * is set), else, under systemd, systemd-ask-password. Prints one clear line and returns -1 on
 * error.
 */
int secret_read(const struct secret_source *src, int confirm, struct kr_secret *secret);

/*
 * With no key source given: the token when a PIN was given. A keyring with no passphrase, key
 * file or RSA slot is refused in one line naming the option that would use its token or KMS
 * slot: a keyring is read before its MAC can be checked, so the module or program it names is
 * loaded or run only when asked for. 0, or -1 after the message.
 */
int secret_source_auto(struct secret_source *src, const char *keyring_path);

/* Wipes and frees the secret's bytes. */
void secret_free(struct kr_secret *secret);

#endif
