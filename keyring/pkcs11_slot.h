/*
 * PKCS#11 unlock slots: the slot's wrapping key is sealed with AES-256-GCM by an AES key that
 * lives in a token and never leaves it (sensitive, not extractable). The module is loaded
 * with dlopen and called through its function list; the token is found by its label.
 *
 * Spec (stored in the slot, no secret): "module=PATH;token=LABEL;key=LABEL".
 */
#ifndef KEKFS_PKCS11_SLOT_H
#define KEKFS_PKCS11_SLOT_H

#include <stddef.h>
#include <stdint.h>

#include "keyring.h"

/* Fills x's seal and open for PKCS#11 slots, logging in with pin (secure memory). */
void pkcs11_external(struct kr_external *x, const uint8_t *pin, size_t pin_len);

/* Checks a spec's form: 0, or -1 with msg set. */
int pkcs11_spec_check(const char *spec, char *msg, size_t msg_size);

/*
 * Creates the spec's key in its token: AES-256, sensitive, not extractable, on the token.
 * Refused if a key with that label exists. 0, or -1 with x->msg set.
 */
int pkcs11_create_key(struct kr_external *x, const char *spec);

#endif
