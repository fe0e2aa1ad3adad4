/*
 * Key sources for mounts with no one at a keyboard: an external program (a KMS, Vault,
 * clevis/tang, a TPM), a systemd credential, and systemd-ask-password.
 *
 * A key-command or a key credential gives either exactly 32 raw bytes or 64 hex characters
 * (one trailing newline allowed). Each function prints one "kekfs: " line and returns -1 on
 * error; on success the secret's bytes are in secure memory (free with secret_free).
 */
#ifndef KEKFS_KEYSOURCE_H
#define KEKFS_KEYSOURCE_H

#include "../keyring/keyring.h"

#define KEY_COMMAND_TIMEOUT 30 /* seconds, unless key-command-timeout= says otherwise */

/*
 * Runs CMD (an absolute path, then arguments split on spaces; no shell) with a minimal
 * environment and stdin on /dev/null; its stderr passes through. Killed after timeout_s.
 */
int keysource_command(const char *cmd, int timeout_s, const char *label, struct kr_secret *secret);

/*
 * Runs CMD as keysource_command does and keeps the first line it prints, without its
 * newline, as a passphrase (gocryptfs -extpass; pass, secret-tool). Nothing printed, or a
 * failing program, is refused in one line.
 */
int keysource_passphrase_command(const char *cmd, int timeout_s, const char *label,
				 struct kr_secret *secret);

/* Reads the key credential NAME from $CREDENTIALS_DIRECTORY. */
int keysource_credential(const char *name, struct kr_secret *secret);

/*
 * Keeps the first line of buf (len bytes of secure memory, taken over), without its newline,
 * as a passphrase: what 'echo pass > file' produces. An empty one is refused in one line
 * naming where it came from (what), and buf is freed.
 */
int keysource_passphrase(uint8_t *buf, size_t len, const char *what, struct kr_secret *secret);

/* Reads the first line of the credential NAME (a passphrase or a PIN). */
int keysource_line_credential(const char *name, struct kr_secret *secret);

/* Loads kekfs.key or kekfs.passphrase from $CREDENTIALS_DIRECTORY: 1 if found, 0 if not. */
int keysource_default_credential(struct kr_secret *secret);

/* 1 when a passphrase must come from systemd-ask-password: under systemd, no terminal. */
int keysource_ask_password_wanted(void);

/* Asks for the passphrase of the volume LABEL through systemd's password agents. */
int keysource_ask_password(const char *label, struct kr_secret *secret);

#endif
