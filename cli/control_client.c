/* The client end of the control socket: one command to a mounted volume's daemon. */
#include "control_client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../volume/control_socket.h"

#define CONTROL_REPLY_MAX 16384

/* Sends the command line, with fd_to_pass (if >= 0) as SCM_RIGHTS. */
static int send_request(int fd, const char *line, int fd_to_pass)
{
	union {
		struct cmsghdr h;
		char room[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = {.iov_base = (void *)line, .iov_len = strlen(line)};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	struct cmsghdr *cm;

	if (fd_to_pass >= 0) {
		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.room;
		msg.msg_controllen = sizeof(ctl.room);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd_to_pass, sizeof(int));
	}
	return sendmsg(fd, &msg, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

int control_request(const char *mountpoint, uid_t uid, const char *command, FILE *out, char *err,
		    size_t err_size)
{
	return control_request_fd(mountpoint, uid, command, -1, out, err, err_size);
}

/* Whether the socket name in dir_fd is one uid's daemon could have made: 1, 0 if there is
 * none, -1 with why in err. */
static int socket_present(int dir_fd, const char *dir, const char *name, uid_t uid, char *err,
			  size_t err_size)
{
	struct stat st;

	if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return errno == ENOENT ? 0 : -1;
	if (S_ISSOCK(st.st_mode) && (st.st_uid == uid || st.st_uid == 0))
		return 1;
	snprintf(err, err_size, "%s/%s is not a socket of uid %u: refusing to use it", dir, name,
		 (unsigned)uid);
	return -1;
}

/* Refuses a peer that is neither uid nor root: 0, or -1 with why in err. */
static int peer_check(int fd, uid_t uid, const char *mountpoint, char *err, size_t err_size)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
	    (cred.uid == uid || cred.uid == 0))
		return 0;
	snprintf(err, err_size,
		 "the control socket of %s is not served by uid %u or root: refusing to send it "
		 "anything",
		 mountpoint, (unsigned)uid);
	return -1;
}

/* Connects to name in the directory open as dir_fd, to a peer that is uid or root: the fd,
 * or -1 with why in err. */
static int connect_in(int dir_fd, const char *name, const char *mountpoint, uid_t uid, char *err,
		      size_t err_size)
{
	struct sockaddr_un addr;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	control_socket_addr(dir_fd, name, &addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
		snprintf(err, err_size, "cannot reach the daemon of %s: %s", mountpoint,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (peer_check(fd, uid, mountpoint, err, err_size) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Connects to the daemon of mountpoint run as uid, in the first socket directory that has
 * its socket -- each checked to be uid's own -- and only to a peer that is uid or root.
 * The fd, or -1 with the one-line reason in err.
 */
static int control_connect(const char *mountpoint, uid_t uid, char *err, size_t err_size)
{
	char dirs[CONTROL_SOCKET_DIRS_MAX][PATH_MAX], name[CONTROL_SOCKET_NAME_MAX];
	int n = control_socket_dirs(uid, 0, dirs);

	control_socket_name(mountpoint, name);
	for (int i = 0; i < n; i++) {
		int dir_fd = control_socket_dir_open(dirs[i], uid, 0, err, err_size), found, fd;

		if (dir_fd == -ENOENT)
			continue;
		if (dir_fd == -EACCES)
			snprintf(err, err_size,
				 "cannot reach the daemon of %s: only root and the user who "
				 "mounted may control it",
				 mountpoint);
		if (dir_fd < 0)
			return -1;
		found = socket_present(dir_fd, dirs[i], name, uid, err, err_size);
		fd = found == 1 ? connect_in(dir_fd, name, mountpoint, uid, err, err_size) : -1;
		close(dir_fd);
		if (found != 0)
			return fd;
	}
	snprintf(err, err_size, "cannot reach the daemon of %s: %s", mountpoint, strerror(ENOENT));
	return -1;
}

int control_request_fd(const char *mountpoint, uid_t uid, const char *command, int fd_to_pass,
		       FILE *out, char *err, size_t err_size)
{
	char buf[CONTROL_REPLY_MAX], *body;
	size_t got = 0;
	ssize_t n;
	int fd = control_connect(mountpoint, uid, err, err_size);

	if (fd < 0)
		return -1;
	snprintf(buf, sizeof(buf), "%s\n", command);
	if (send_request(fd, buf, fd_to_pass) != 0) {
		snprintf(err, err_size, "the daemon of %s hung up: %s", mountpoint,
			 strerror(errno));
		close(fd);
		return -1;
	}
	while (got < sizeof(buf) - 1 && (n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	close(fd);
	buf[got] = '\0';
	body = strchr(buf, '\n');
	if (strncmp(buf, "ok", 2) == 0) {
		if (body && out)
			fputs(body + 1, out);
		return 0;
	}
	if (body)
		*body = '\0';
	snprintf(err, err_size, "%s", strncmp(buf, "error ", 6) == 0 ? buf + 6 : "no answer");
	return -1;
}
