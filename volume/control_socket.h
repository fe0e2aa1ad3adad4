/*
 * The control socket's place: a directory per user that only that user can have put sockets
 * in, and a name per mount point. The daemon (fs/control.c) and the client
 * (cli/control_client.c) both check it the same way.
 */
#ifndef KEKFS_CONTROL_SOCKET_H
#define KEKFS_CONTROL_SOCKET_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/un.h>

#define CONTROL_SOCKET_NAME_MAX 40 /* 32 hex and ".sock" */
#define CONTROL_SOCKET_DIRS_MAX 3

/* The socket directories of uid's daemons, in the order a client looks; how many. */
int control_socket_dirs(uid_t uid, int for_daemon, char dirs[CONTROL_SOCKET_DIRS_MAX][PATH_MAX]);

/* The socket's name in its directory: a hash of the mount point. */
void control_socket_name(const char *mountpoint, char out[CONTROL_SOCKET_NAME_MAX]);

/*
 * Opens (with create: makes first) a socket directory that only uid can have put sockets in.
 * The fd; -ENOENT if there is none; -EACCES if it is someone else's; -EPERM with why in err.
 */
int control_socket_dir_open(const char *dir, uid_t uid, int create, char *err, size_t err_size);

/* The address of name in the directory open as dir_fd, reached through that fd. */
void control_socket_addr(int dir_fd, const char *name, struct sockaddr_un *addr);

#endif
