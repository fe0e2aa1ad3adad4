/* Where a daemon's control socket lives, and the checks that both ends make on it. */
#include "control_socket.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

/*
 * Where the control sockets of uid's daemons are, in the order a client looks; a daemon
 * uses the first it is given. Root's are in /run/kekfs. Another user's go in
 * $XDG_RUNTIME_DIR/kekfs when it is set, else in /tmp/kekfs-UID; a client also looks in
 * /run/user/UID/kekfs, which is what $XDG_RUNTIME_DIR usually is (root asking about another
 * user's mount has not got that user's environment).
 */
int control_socket_dirs(uid_t uid, int for_daemon, char dirs[CONTROL_SOCKET_DIRS_MAX][PATH_MAX])
{
	const char *xdg = geteuid() == uid ? getenv("XDG_RUNTIME_DIR") : NULL;
	int n = 0;

	if (uid == 0) {
		snprintf(dirs[n++], PATH_MAX, "/run/kekfs");
		return n;
	}
	if (xdg && xdg[0] == '/')
		snprintf(dirs[n++], PATH_MAX, "%s/kekfs", xdg);
	if (!for_daemon)
		snprintf(dirs[n++], PATH_MAX, "/run/user/%u/kekfs", (unsigned)uid);
	if (!for_daemon || n == 0)
		snprintf(dirs[n++], PATH_MAX, "/tmp/kekfs-%u", (unsigned)uid);
	return n;
}

/* The socket's name in its directory: a hash of the mount point. */
void control_socket_name(const char *mountpoint, char out[CONTROL_SOCKET_NAME_MAX])
{
	uint8_t hash[16];
	char hex[33];

	crypto_generichash(hash, sizeof(hash), (const uint8_t *)mountpoint, strlen(mountpoint),
			   NULL, 0);
	sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
	snprintf(out, CONTROL_SOCKET_NAME_MAX, "%s.sock", hex);
}

/* The parent of a socket directory: uid's or root's, and if others may write it, sticky
 * (else they could rename the directory away and put their own in its place). */
static int parent_ok(const char *dir, uid_t uid)
{
	char parent[PATH_MAX];
	struct stat st;

	snprintf(parent, sizeof(parent), "%s", dir);
	*strrchr(parent, '/') = '\0';
	if (stat(parent[0] ? parent : "/", &st) != 0)
		return 0;
	return (st.st_uid == uid || st.st_uid == 0) &&
	       (!(st.st_mode & (S_IWGRP | S_IWOTH)) || (st.st_mode & S_ISVTX));
}

/*
 * Opens a socket directory that only uid can have put sockets in: a directory, not a
 * symlink, owned by uid, mode 0700, in a parent no one else can swap it out of. With create,
 * makes it first. Returns the fd; -ENOENT if there is none (a client then looks on); -EACCES
 * if it is someone else's to enter; or -EPERM with the one-line reason in err.
 */
int control_socket_dir_open(const char *dir, uid_t uid, int create, char *err, size_t err_size)
{
	int made = create && mkdir(dir, 0700) == 0;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;

	if (fd < 0 && (errno == ENOENT || errno == EACCES))
		return -errno;
	if (fd >= 0 && made)
		(void)!fchmod(fd, 0700); /* whatever the umask took away */
	if (fd >= 0 && fstat(fd, &st) == 0 && st.st_uid == uid && (st.st_mode & 07777) == 0700 &&
	    parent_ok(dir, uid))
		return fd;
	if (fd < 0)
		snprintf(err, err_size, "%s is not a directory (%s)", dir, strerror(errno));
	else
		snprintf(err, err_size, "%s is owned by uid %u with mode %04o", dir,
			 (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
	snprintf(err + strlen(err), err_size - strlen(err),
		 ", not a directory of uid %u with mode 0700 in a safe parent: someone else may "
		 "have made it; remove it and remount, or set XDG_RUNTIME_DIR",
		 (unsigned)uid);
	if (fd >= 0)
		close(fd);
	return -EPERM;
}

/* The address of name in the directory open as dir_fd, reached through that fd. */
void control_socket_addr(int dir_fd, const char *name, struct sockaddr_un *addr)
{
	*addr = (struct sockaddr_un){.sun_family = AF_UNIX};
	snprintf(addr->sun_path, sizeof(addr->sun_path), "/proc/self/fd/%d/%s", dir_fd, name);
}
