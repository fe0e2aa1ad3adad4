/* Reading a root secret the way a person gives it: key file, passphrase file or prompt. */
#ifndef KEKFS_SECRET_H
#define KEKFS_SECRET_H

#include "../keyring/keyring.h"

/* Where the secret comes from; at most one of the paths is set. */
struct secret_source {
	const char *key_file;
	const char *passphrase_file;
};

/*
 * Fills secret (bytes in secure memory) from the source, or prompts on the terminal when
 * none is given (twice when confirm is set). Prints one clear line and returns -1 on error.
 */
int secret_read(const struct secret_source *src, int confirm, struct kr_secret *secret);

/* Wipes and frees the secret's bytes. */
void secret_free(struct kr_secret *secret);

#endif
