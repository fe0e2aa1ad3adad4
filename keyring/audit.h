/*
 * The audit log (BACKING/.kekfs/audit.log): one JSON line per key event, each carrying a
 * MAC chained over every line before it, keyed by a subkey of the keyring key. Edited,
 * deleted, inserted and reordered lines are found by audit_verify; dropping lines from the
 * end is not (nothing outside the log records its length). No key material is ever written.
 */
#ifndef KEKFS_AUDIT_H
#define KEKFS_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "keyring.h"

#define AUDIT_FILE "audit.log"
#define AUDIT_PENDING_FILE "audit.pending"

/* Who asked: this process, or the peer of a control socket connection. */
struct audit_actor {
	uid_t uid;
	pid_t pid;
};

struct audit_event {
	const char *op;	     /* "init", "unlock", "rotate", "rewrap-done", "destroy", ... */
	uint32_t kek;	     /* KEK version concerned, 0 if none */
	const char *detail;  /* short text without quotes, or NULL (never a key or a path) */
	const char *result;  /* "ok" or a short reason */
	const char *program; /* the actor's program name; NULL: read from /proc/PID/comm */
	uid_t uid;	     /* the actor */
	pid_t pid;
	int note; /* 1: a failed unlock from audit.pending, which nothing authenticated */
};

#define AUDIT_TIME_LEN 20    /* 2026-11-22T13:18:58Z */
#define AUDIT_PROGRAM_MAX 15 /* as in /proc/PID/comm */

/* A failed unlock noted in audit.pending: "TIME UID PID PROGRAM\n". */
struct audit_note {
	char when[AUDIT_TIME_LEN + 1];
	uid_t uid;
	pid_t pid;
	char program[AUDIT_PROGRAM_MAX + 1];
};

/*
 * The one JSON string encoder of the log: writes in (NULL as "") to out escaped for use
 * between quotes -- quote, backslash, control characters, DEL and each byte that is not part
 * of valid UTF-8 as \u00XX -- and returns the escaped length, like snprintf. A value that
 * does not fit is cut before the first escape that does not fit, never inside one.
 */
size_t audit_json_escape(char *out, size_t size, const char *in);

/*
 * Parses one line of audit.pending strictly: ISO-8601 UTC time, decimal uid and pid, and a
 * program name of 1 to AUDIT_PROGRAM_MAX printable ASCII characters, then the newline.
 * 0, or -EINVAL for anything else (such a line is dropped, and counted, not chained).
 */
int audit_note_parse(const char *line, struct audit_note *n);

/* The actor of an event is this process. */
void audit_event_self(struct audit_event *ev);

/*
 * Appends one authenticated line to the log in dir (.kekfs), after first moving in any
 * failed unlocks recorded while no key was at hand. Returns 0 or -errno.
 */
int audit_append(const char *dir, const struct keyring *kr, const struct audit_event *ev);

/* Records a failed unlock without a key; the next audit_append authenticates it. */
int audit_note_failure(const char *dir, const struct audit_event *ev);

/*
 * Checks the whole chain. Returns 0 with *lines set and msg saying how many records it holds
 * and how many of them are unauthenticated notes; or -1 with a message that names the first
 * bad line and what is wrong with it (edited, missing, inserted or out of order).
 */
int audit_verify(const char *dir, const struct keyring *kr, unsigned long *lines, char *msg,
		 size_t msg_size);

#endif
