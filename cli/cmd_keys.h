/* What the kekfs keys and rotate subcommands share: their parsed options. */
#ifndef KEKFS_CMD_KEYS_H
#define KEKFS_CMD_KEYS_H

#include <limits.h>

#include "secret.h"

struct keys_opts {
	struct secret_source src;
	const char *keyring;
	int force, resume, now, wait;
	const char *after;	      /* a duration: "7d", "12h" */
	struct secret_source new_src; /* add-slot, passwd */
	const char *import_file;      /* keys import --file */
	const char *rotate_every;     /* keys policy --rotate-every */
	int older;		      /* keys restore FILE --older */
	char target[PATH_MAX];
};

/* keys backup FILE TARGET: writes the keyring and config as they are (cli/keys_backup.c). */
int keys_backup(const char *file, struct keys_opts *o);

/* keys restore FILE TARGET [--older]: after a lost or damaged keyring, or on purpose. */
int keys_restore(const char *file, struct keys_opts *o);

#endif
