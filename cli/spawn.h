/*
 * Running a helper program that handles key material (a key-command, a KMS plugin,
 * systemd-ask-password): no shell, a given environment, a deadline after which it and its
 * children are killed, its stdout read straight into secure memory.
 */
#ifndef KEKFS_SPAWN_H
#define KEKFS_SPAWN_H

#include <stddef.h>
#include <stdint.h>

struct spawn_io {
	const uint8_t *in; /* written to its stdin, which is then closed; NULL: /dev/null */
	size_t in_len;
	uint8_t *out; /* its stdout, at most out_max bytes (secure memory) */
	size_t out_max;
	char *err; /* the last err_max - 1 bytes of its stderr; NULL: stderr passes through */
	size_t err_max;
};

/* How a finished program ended, and what it printed. */
struct spawn_result {
	size_t out_len;
	int overflow; /* printed more than out_max */
	int timed_out;
	int wstatus;
};

/* Runs argv[0] (an absolute path). 0 once it ended or was killed; -1 if it could not start. */
int spawn_run(char *const argv[], char *const envp[], int timeout_s, struct spawn_io *io,
	      struct spawn_result *r);

/*
 * One line for a run that did not end with status 0 (what: "key-command /x"), with the
 * last line of its stderr when captured; 0 if it did.
 */
int spawn_verdict(const char *what, const struct spawn_io *io, const struct spawn_result *r,
		  int timeout_s, char *msg, size_t msg_size);

#endif
