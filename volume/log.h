/* The daemon's log: stderr in the foreground, a file with --log-file, else syslog. */
#ifndef KEKFS_LOG_H
#define KEKFS_LOG_H

#include <syslog.h>

enum log_target {
	LOG_TO_STDERR,
	LOG_TO_FILE,
	LOG_TO_SYSLOG,
};

/* path is used for LOG_TO_FILE; returns 0 or -errno. */
int log_open(int target, const char *path);

/* Drops messages less urgent than prio (LOG_ERR, LOG_WARNING, ...); the default keeps all. */
void log_set_level(int prio);

/* One line, prefixed with time and level. Never pass key material, nonces or plaintext. */
void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
