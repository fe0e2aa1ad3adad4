/* systemd's readiness protocol (sd_notify) without linking libsystemd. */
#ifndef KEKFS_NOTIFY_H
#define KEKFS_NOTIFY_H

/*
 * Sends STATE (e.g. "READY=1") as one datagram to the unix socket named by $NOTIFY_SOCKET
 * ('@' = abstract). Returns 1 if sent, 0 if there is no $NOTIFY_SOCKET, -1 on error.
 */
int notify_send(const char *state);

#endif
