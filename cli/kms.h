/*
 * KMS plugin slots: a program (AWS KMS, Vault Transit, clevis, a TPM...) seals the slot's
 * wrapping key and opens it again. The protocol is in docs/KMS-PLUGINS.md.
 *
 * A slot's spec is the command line, its program made absolute, then one line per name of an
 * environment variable the program is given (e.g. VAULT_ADDR): never a value.
 */
#ifndef KEKFS_KMS_H
#define KEKFS_KMS_H

#include <stddef.h>

#include "../keyring/keyring.h"

#define KMS_TIMEOUT 30 /* seconds a plugin may take, unless --kms-timeout says otherwise */
#define KMS_ENV_MAX 8  /* variables a slot may pass through */

/*
 * Builds the spec for command ("PROG ARGS", split as described in KMS-PLUGINS.md) and the
 * variable names; PROG is looked up in the standard PATH unless it has a '/'. 0, or -1 after
 * one "kekfs: " line.
 */
int kms_spec_make(const char *command, const char *const *env, int n_env, char *spec, size_t size);

/* Fills x's seal and open to run the slot's plugin, killed after timeout_s. */
void kms_external(struct kr_external *x, int timeout_s);

#endif
