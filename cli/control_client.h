/*
 * Talking to a mounted volume's daemon: one command line in, then "ok" or "error MESSAGE" and
 * text lines out (fs/control.h). A client talks only to a daemon that is the mounting user or
 * root, through a socket directory that only that user can write.
 */
#ifndef KEKFS_CONTROL_CLIENT_H
#define KEKFS_CONTROL_CLIENT_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

/*
 * Sends one command to the daemon of mountpoint (run as uid) and copies its reply body to
 * out. Returns 0 on "ok"; otherwise -1 with the daemon's message (or why it could not be
 * reached) in err.
 */
int control_request(const char *mountpoint, uid_t uid, const char *command, FILE *out, char *err,
		    size_t err_size);

/* The same, passing fd_to_pass to the daemon with the command (a key file for "import"). */
int control_request_fd(const char *mountpoint, uid_t uid, const char *command, int fd_to_pass,
		       FILE *out, char *err, size_t err_size);

#endif
