/*
 * One poll loop feeds the program's stdin and drains its stdout and stderr together, so a
 * plugin that writes a lot of diagnostics before reading its input cannot deadlock us.
 */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

enum { P_IN, P_OUT, P_ERR, P_N };

static long ms_left(const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

/* The child: own process group (so a timeout kills its children too), the pipes given (or
 * /dev/null for stdin, the inherited stderr), no other descriptor, only the environment. */
static void child_exec(char *const argv[], char *const envp[], int fds[P_N])
{
	int in = fds[P_IN] >= 0 ? fds[P_IN] : open("/dev/null", O_RDONLY);
	sigset_t none;

	setpgid(0, 0);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	if (in < 0 || dup2(in, STDIN_FILENO) < 0 || dup2(fds[P_OUT], STDOUT_FILENO) < 0 ||
	    (fds[P_ERR] >= 0 && dup2(fds[P_ERR], STDERR_FILENO) < 0))
		_exit(127);
	close_range(3, ~0U, 0);
	execve(argv[0], argv, envp);
	_exit(127);
}

/* Keeps the tail of stderr: when full, the oldest half goes. */
static void err_keep(struct spawn_io *io, size_t *len, const char *buf, size_t n)
{
	size_t room = io->err_max - 1;

	for (size_t i = 0; i < n; i++) {
		if (*len == room) {
			memmove(io->err, io->err + room / 2, room - room / 2);
			*len = room - room / 2;
		}
		io->err[(*len)++] = buf[i];
	}
	io->err[*len] = '\0';
}

/* One read from the child's stdout (into secure memory) or stderr; 0 at EOF. */
static int drain(int fd, int which, struct spawn_io *io, struct spawn_result *r, size_t *err_len)
{
	char scratch[512]; /* stderr, or stdout past out_max: wiped below */
	ssize_t n;

	if (which == P_OUT && r->out_len < io->out_max)
		n = read(fd, io->out + r->out_len, io->out_max - r->out_len);
	else
		n = read(fd, scratch, sizeof(scratch));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 1;
	if (n > 0 && which == P_ERR)
		err_keep(io, err_len, scratch, (size_t)n);
	else if (n > 0 && r->out_len < io->out_max)
		r->out_len += (size_t)n;
	else if (n > 0)
		r->overflow = 1;
	sodium_memzero(scratch, sizeof(scratch));
	return n > 0;
}

/* Feeds stdin and drains stdout and stderr until both end or the deadline passes. */
static void pump(int fds[P_N], const struct timespec *deadline, struct spawn_io *io,
		 struct spawn_result *r)
{
	size_t written = 0, err_len = 0;

	while (fds[P_OUT] >= 0 || fds[P_ERR] >= 0) {
		struct pollfd p[P_N];
		long left = ms_left(deadline);

		for (int i = 0; i < P_N; i++)
			p[i] =
			    (struct pollfd){.fd = fds[i], .events = i == P_IN ? POLLOUT : POLLIN};
		if (left <= 0 || poll(p, P_N, (int)left) == 0) {
			r->timed_out = 1;
			return;
		}
		if (fds[P_IN] >= 0 && p[P_IN].revents) {
			ssize_t n = write(fds[P_IN], io->in + written, io->in_len - written);
			written += n > 0 ? (size_t)n : 0;
			if ((n < 0 && errno != EINTR && errno != EAGAIN) || written == io->in_len)
				close(fds[P_IN]), fds[P_IN] = -1;
		}
		for (int i = P_OUT; i < P_N; i++)
			if (fds[i] >= 0 && p[i].revents && !drain(fds[i], i, io, r, &err_len))
				close(fds[i]), fds[i] = -1;
	}
}

/* Waits for the child until the deadline (a pidfd makes the wait pollable), else kills it. */
static void reap(pid_t pid, const struct timespec *deadline, struct spawn_result *r)
{
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);

	if (!r->timed_out && pidfd >= 0) {
		struct pollfd p = {.fd = pidfd, .events = POLLIN};
		long left = ms_left(deadline);
		if (left <= 0 || poll(&p, 1, (int)left) == 0)
			r->timed_out = 1;
	}
	if (pidfd >= 0)
		close(pidfd);
	if (r->timed_out)
		kill(-pid, SIGKILL);
	while (waitpid(pid, &r->wstatus, 0) < 0 && errno == EINTR)
		;
}

static void close_all(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* Pipes for stdin (if there is input), stdout and stderr (if captured): [i][0] reads. */
static int make_pipes(const struct spawn_io *io, int pipes[P_N][2])
{
	for (int i = 0; i < P_N; i++) {
		pipes[i][0] = pipes[i][1] = -1;
		if ((i == P_IN && !io->in) || (i == P_ERR && !io->err))
			continue;
		if (pipe2(pipes[i], O_CLOEXEC) != 0) {
			close_all(&pipes[0][0], 2 * P_N);
			return -1;
		}
	}
	return 0;
}

int spawn_run(char *const argv[], char *const envp[], int timeout_s, struct spawn_io *io,
	      struct spawn_result *r)
{
	int pipes[P_N][2], child[P_N], parent[P_N];
	struct timespec deadline;
	void (*old_pipe)(int);
	pid_t pid;

	memset(r, 0, sizeof(*r));
	if (io->err)
		io->err[0] = '\0';
	if (make_pipes(io, pipes) != 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close_all(&pipes[0][0], 2 * P_N);
		return -1;
	}
	for (int i = 0; i < P_N; i++) { /* the child reads stdin's [0], writes the others' [1] */
		child[i] = pipes[i][i == P_IN ? 0 : 1];
		parent[i] = pipes[i][i == P_IN ? 1 : 0];
	}
	if (pid == 0)
		child_exec(argv, envp, child);
	close_all(child, P_N);
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_s;
	old_pipe = signal(SIGPIPE, SIG_IGN); /* a plugin that does not read its input */
	pump(parent, &deadline, io, r);
	signal(SIGPIPE, old_pipe);
	close_all(parent, P_N);
	reap(pid, &deadline, r);
	return 0;
}

/* The last non-empty line of s, without its newline, into out. */
static void last_line(const char *s, char *out, size_t size)
{
	size_t end = strlen(s), start;

	while (end > 0 && (s[end - 1] == '\n' || s[end - 1] == '\r' || s[end - 1] == ' '))
		end--;
	start = end;
	while (start > 0 && s[start - 1] != '\n')
		start--;
	snprintf(out, size, "%.*s", (int)(end - start), s + start);
}

int spawn_verdict(const char *what, const struct spawn_io *io, const struct spawn_result *r,
		  int timeout_s, char *msg, size_t msg_size)
{
	char said[300] = "", tail[320] = "";

	if (io->err)
		last_line(io->err, said, sizeof(said));
	if (said[0])
		snprintf(tail, sizeof(tail), ": %s", said);
	if (r->timed_out)
		snprintf(msg, msg_size, "%s did not finish within %d s and was killed", what,
			 timeout_s);
	else if (WIFSIGNALED(r->wstatus))
		snprintf(msg, msg_size, "%s was killed by signal %d", what, WTERMSIG(r->wstatus));
	else if (WEXITSTATUS(r->wstatus) == 127 && r->out_len == 0 && !said[0])
		snprintf(msg, msg_size, "cannot run %s", what);
	else if (WEXITSTATUS(r->wstatus) != 0)
		snprintf(msg, msg_size, "%s failed (exit status %d)%s", what,
			 WEXITSTATUS(r->wstatus), tail);
	else
		return 0;
	return -1;
}
