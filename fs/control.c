#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "../crypto/keywrap.h"
#include "../crypto/secmem.h"
#include "../volume/census.h"
#include "../volume/control_socket.h"
#include "../volume/log.h"
#include "../volume/namekey.h"
#include "../volume/status.h"
#include "../volume/thread.h"

#define CONTROL_LINE_MAX (PATH_MAX + 64) /* "shred 1 " and a path */
#define CONTROL_QUEUE_MAX 32		 /* requests waiting for the worker; more are refused */

/* A client's request: who sent it, its line, an fd passed with it (-1 if none). */
struct control_req {
	struct control_req *next;
	int fd, passed_fd;
	struct audit_actor actor;
	char line[CONTROL_LINE_MAX];
};

/*
 * Two threads: one accepts clients and answers "status" at once; the worker runs every other
 * request, one at a time in the order they came, and the rotation policy. A long request
 * (rotate --data of a large file, shred -r, seal) then never keeps status from answering.
 */
struct control {
	struct control_info info;
	uid_t uid;
	int listen_fd;
	int dir_fd; /* the socket directory */
	int stop_pipe[2];
	pthread_t thread, worker;
	pthread_mutex_t mu;
	pthread_cond_t queued;
	struct control_req *head, *tail; /* for the worker, under mu */
	unsigned nqueued;		 /* under mu */
	int stopping;			 /* under mu */
	_Atomic int remounted_ro; /* mount -o remount,ro: nothing may write the volume */
	char name[CONTROL_SOCKET_NAME_MAX];
};

/* One command being run: its caller, the fd passed with it, and where its reply goes. */
struct control_call {
	struct control *c;
	const struct audit_actor *actor;
	int passed_fd;
	FILE *out;
};

/* The status text of the mounted volume, with its re-wrap. */
static void control_status_print(struct control *c, FILE *out)
{
	const struct volume_status st = {.backing = c->info.backing,
					 .mountpoint = c->info.mountpoint,
					 .vol = c->info.vol,
					 .kr = c->info.kr,
					 .rot = c->info.rot};

	volume_status_print(out, &st);
}

static void cmd_status(struct control_call *k, const char *args)
{
	(void)args;
	fputs("ok\n", k->out);
	control_status_print(k->c, k->out);
}

/* "keys CHANGE VERSION FORCE WHEN": a census-guarded change of an old KEK's state. */
static void cmd_keys(struct control_call *k, const char *args)
{
	struct control *c = k->c;
	unsigned change, version, force;
	unsigned long long when;
	char msg[8192];

	if (sscanf(args, "%u %u %u %llu", &change, &version, &force, &when) != 4 ||
	    change > KEK_DESTROY_NOW) {
		fputs("error malformed key command\n", k->out);
		return;
	}
	if (census_change_kek(c->info.backing_fd, c->info.vol, c->info.kr, c->info.keyring_path,
			      c->info.audit_dir, k->actor, version, (enum kek_change)change, when,
			      (int)force, msg, sizeof(msg)) != 0) {
		fprintf(k->out, "error %s\n", msg);
		return;
	}
	if (volume_record_generation(c->info.vol, c->info.kr, c->info.volume_path) != VOL_OK)
		log_msg(LOG_ERR, "cannot record the keyring generation in %s", c->info.volume_path);
	log_msg(LOG_NOTICE, "%s", msg);
	fprintf(k->out, "ok\n%s\n", msg);
}

/* "shred-verify HEX": whether a copy of a header (hex) could still be opened. */
static void cmd_shred_verify(struct control_call *k, const char *args)
{
	uint8_t hdr[HEADER_LEN];
	char msg[PATH_MAX + 128];

	if (sodium_hex2bin(hdr, sizeof(hdr), args, strlen(args), NULL, NULL, NULL) != 0) {
		fputs("error malformed header\n", k->out);
		return;
	}
	shred_verify_header(k->c->info.vol, k->c->info.kr, hdr, msg, sizeof(msg));
	fprintf(k->out, "ok\n%s\n", msg);
}

/* "shred R PATH" (R: 1 for a whole tree): the report of volume/shred.c is the reply. */
static void cmd_shred(struct control_call *k, const char *args)
{
	char *body = NULL, err[PATH_MAX + 128];
	size_t len = 0;
	FILE *rep;
	int rc;

	if ((args[0] != '0' && args[0] != '1') || args[1] != ' ') {
		fputs("error malformed shred command\n", k->out);
		return;
	}
	rep = open_memstream(&body, &len);
	rc = rep ? shred_path(k->c->info.shred, args + 2, args[0] == '1', k->actor, rep, err,
			      sizeof(err))
		 : -ENOMEM;
	if (rep)
		fclose(rep);
	if (rc != 0)
		fprintf(k->out, "error %s\n", rc == -ENOMEM && !rep ? "out of memory" : err);
	else
		fprintf(k->out, "ok\n%s", body ? body : "");
	free(body);
}

/* "seal": rotates, re-wraps everything, then destroys every older KEK (volume/shred.c). */
static void cmd_seal(struct control_call *k, const char *args)
{
	uint32_t version;
	int rc = seal_start(k->c->info.shred, k->actor, &version);

	(void)args;
	if (rc != 0)
		fprintf(k->out, "error seal failed to start: %s\n", strerror(-rc));
	else
		fprintf(k->out,
			"ok\nKEK v%u is active; re-wrapping every file, then destroying every "
			"older KEK\n",
			version);
}

static void cmd_seal_status(struct control_call *k, const char *args)
{
	(void)args;
	fputs("ok\n", k->out);
	seal_status(k->c->info.shred, k->out);
}

/* "redata PATH": re-encrypts one file under a fresh DEK (volume/redata.c). */
static void cmd_redata(struct control_call *k, const char *rel)
{
	struct control *c = k->c;
	char err[PATH_MAX + 128];

	if (redata_file(c->info.redata, rel, k->actor, err, sizeof(err)) != 0)
		fprintf(k->out, "error %s\n", err);
	else
		fprintf(k->out, "ok\n%s: re-encrypted under a new data key (KEK v%u)\n", rel,
			keyring_active_version(c->info.kr));
}

/* Starts a rotation to a new KEK (random, or the customer's material) and says so. */
static void control_rotate(struct control_call *k, int force, const uint8_t *material)
{
	uint32_t version;
	int rc = rotation_start(k->c->info.rot, force, k->actor, material, &version);

	if (rc == -EBUSY)
		fputs("error a re-wrap is still running (see 'kekfs status'); wait for it, or use "
		      "--force\n",
		      k->out);
	else if (rc != 0)
		fprintf(k->out, "error rotation failed: %s; nothing changed\n", strerror(-rc));
	else
		fprintf(k->out,
			"ok\nKEK v%u is active; re-wrapping every file header in the background "
			"('kekfs status' shows progress)\n",
			version);
}

static void cmd_rotate(struct control_call *k, const char *args)
{
	(void)args;
	control_rotate(k, 0, NULL);
}

static void cmd_rotate_force(struct control_call *k, const char *args)
{
	(void)args;
	control_rotate(k, 1, NULL);
}

/*
 * "import": BYOK on a mounted volume. The key file comes as an fd passed with the command
 * (SCM_RIGHTS), opened by the client with its own rights; its 32 bytes go straight into
 * secure memory and become the next KEK.
 */
static void control_import(struct control_call *k, int force)
{
	unsigned char *material = NULL;
	struct stat st;
	ssize_t n = -1;

	_Static_assert(KEYWRAP_KEY_LEN == SECMEM_KEY_LEN, "key material is a secmem key");
	if (k->passed_fd >= 0 && fstat(k->passed_fd, &st) == 0 && S_ISREG(st.st_mode))
		n = secmem_read_key(k->passed_fd, &material); /* never a pipe: it could block us */
	if (n == -ENOMEM)
		fputs("error out of secure memory\n", k->out);
	else if (material && keyring_find_key(k->c->info.kr, material))
		fprintf(k->out, "error that key material is already KEK v%u of this volume: import a "
			"new key\n",
			keyring_find_key(k->c->info.kr, material));
	else if (!material)
		fprintf(k->out, "error invalid key material: expected 32 bytes, got %s%zd\n",
			n > KEYWRAP_KEY_LEN ? "more than " : "", n > KEYWRAP_KEY_LEN ? 32 : n);
	else
		control_rotate(k, force, material);
	secmem_free(material);
}

static void cmd_import(struct control_call *k, const char *args)
{
	(void)args;
	control_import(k, 0);
}

static void cmd_import_force(struct control_call *k, const char *args)
{
	(void)args;
	control_import(k, 1);
}

/* "policy SECONDS": the rotation period (0: none), saved in the keyring. */
static void cmd_policy(struct control_call *k, const char *args)
{
	struct control *c = k->c;
	unsigned long long seconds = strtoull(args, NULL, 10);
	int rc = keyring_set_rotation_period(c->info.kr, c->info.keyring_path, seconds);

	if (rc != KR_OK)
		fprintf(k->out, "error %s\n", keyring_strerror(rc));
	else
		fputs("ok\nrotation policy saved\n", k->out);
	volume_record_generation(c->info.vol, c->info.kr, c->info.volume_path);
}

/*
 * "readonly on|off", sent by 'mount -o remount,ro|rw' (cli/cmd_remount.c) before the kernel
 * flips the mount: while read-only, nothing of the daemon's own writes the volume either
 * (key changes, shreds, re-encryption, the rotation policy). Going read-only is refused while
 * a re-wrap or a seal runs, which would go on writing; read-write, for a mount that started
 * read-only, which has no lock for writing.
 */
static void cmd_readonly(struct control_call *k, const char *args)
{
	struct control *c = k->c;
	struct rotation_status st = {0};
	int on = strcmp(args, "on") == 0;

	if (!on && strcmp(args, "off") != 0) {
		fputs("error malformed readonly command\n", k->out);
		return;
	}
	if (c->info.rot)
		rotation_get_status(c->info.rot, &st);
	if (!on && !c->info.rot)
		fputs("error it was mounted read-only: unmount it and mount it read-write\n", k->out);
	else if (on && (st.running || (c->info.shred && seal_running(c->info.shred))))
		fputs("error a re-wrap or a seal is running (see 'kekfs status'): wait for it\n",
		      k->out);
	else {
		atomic_store(&c->remounted_ro, on);
		log_msg(LOG_NOTICE, "remounted %s", on ? "read-only" : "read-write");
		fputs("ok\n", k->out);
	}
}

/* "rewrap progress": the re-wrap since the mount, as numbers (fs/control.h). */
static void cmd_rewrap_progress(struct control_call *k, const char *args)
{
	struct rotation_status st = {0};
	unsigned state;

	(void)args;
	if (k->c->info.rot)
		rotation_get_status(k->c->info.rot, &st);
	state = st.target == 0 ? REWRAP_NONE : st.running ? REWRAP_RUNNING : REWRAP_FINISHED;
	fputs("ok\n", k->out);
	fprintf(k->out, REWRAP_PROGRESS_FMT "\n", state, st.target, (unsigned long long)st.done,
		(unsigned long long)st.total, (unsigned long long)st.rewrapped,
		(unsigned long long)st.failed, (unsigned)st.name_key_done,
		(unsigned long long)(st.elapsed * 1000));
}

static void cmd_audit_verify(struct control_call *k, const char *args)
{
	unsigned long lines;
	char msg[512];

	(void)args;
	if (audit_verify(k->c->info.audit_dir, k->c->info.kr, &lines, msg, sizeof(msg)) != 0)
		fprintf(k->out, "error audit log: %s\n", msg);
	else
		fprintf(k->out, "ok\naudit log: %s\n", msg);
}

/* What a command needs of the mount, checked before it runs, each with its refusal. */
enum control_needs {
	NEEDS_KEY_CHANGES = 1 << 0, /* a read-write mount: it changes the keyring */
	NEEDS_SHRED = 1 << 1,	    /* a read-write mount: it shreds or seals */
	NEEDS_REDATA = 1 << 2,	    /* a read-write mount: it re-encrypts */
	NOT_DURING_SEAL = 1 << 3,   /* refused while a seal runs */
};

/* One command of the protocol: the whole line, or its verb and then " ARGS". */
struct control_command {
	const char *verb;
	int takes_args;
	unsigned needs; /* enum control_needs */
	void (*run)(struct control_call *k, const char *args);
};

static const struct control_command control_commands[] = {
    {"status", 0, 0, cmd_status},
    {"rotate", 0, NEEDS_KEY_CHANGES, cmd_rotate},
    {"rotate force", 0, NEEDS_KEY_CHANGES, cmd_rotate_force},
    {"import", 0, NEEDS_KEY_CHANGES, cmd_import},
    {"import force", 0, NEEDS_KEY_CHANGES, cmd_import_force},
    {"keys", 1, NEEDS_KEY_CHANGES | NOT_DURING_SEAL, cmd_keys},
    {"policy", 1, NEEDS_KEY_CHANGES, cmd_policy},
    {"shred", 1, NEEDS_SHRED, cmd_shred},
    {"shred-verify", 1, NEEDS_SHRED, cmd_shred_verify},
    {"seal", 0, NEEDS_SHRED | NOT_DURING_SEAL, cmd_seal},
    {"seal status", 0, NEEDS_SHRED, cmd_seal_status},
    {"redata", 1, NEEDS_REDATA | NOT_DURING_SEAL, cmd_redata},
    {"audit verify", 0, 0, cmd_audit_verify},
    {"readonly", 1, 0, cmd_readonly},
    {"rewrap progress", 0, 0, cmd_rewrap_progress},
};

/* The command line names, and where its arguments start (NULL if none). */
static const struct control_command *command_find(const char *line, const char **args)
{
	for (size_t i = 0; i < sizeof(control_commands) / sizeof(control_commands[0]); i++) {
		const struct control_command *cmd = &control_commands[i];
		size_t n = strlen(cmd->verb);

		if (!cmd->takes_args && strcmp(line, cmd->verb) == 0) {
			*args = "";
			return cmd;
		}
		if (cmd->takes_args && strncmp(line, cmd->verb, n) == 0 && line[n] == ' ') {
			*args = line + n + 1;
			return cmd;
		}
	}
	return NULL;
}

/* Why this mount cannot run cmd now (a reply line), or NULL. */
static const char *command_refusal(const struct control *c, const struct control_command *cmd)
{
	if ((cmd->needs & (NEEDS_KEY_CHANGES | NEEDS_SHRED | NEEDS_REDATA)) &&
	    atomic_load(&c->remounted_ro))
		return "error the volume is remounted read-only: mount -o remount,rw it first\n";
	if ((cmd->needs & NEEDS_KEY_CHANGES) && !c->info.rot)
		return "error the volume is mounted read-only: key changes are refused\n";
	if ((cmd->needs & NEEDS_SHRED) && !c->info.shred)
		return "error the volume is mounted read-only: shredding needs a read-write "
		       "mount\n";
	if ((cmd->needs & NEEDS_REDATA) && !c->info.redata)
		return "error the volume is mounted read-only: re-encryption needs a read-write "
		       "mount\n";
	if ((cmd->needs & NOT_DURING_SEAL) && c->info.shred && seal_running(c->info.shred))
		return "error a seal is running (see 'kekfs shred --seal' or the log); wait for "
		       "it\n";
	return NULL;
}

/* Runs one command line; the reply goes to out, which the caller sends. */
static void control_dispatch(struct control *c, const struct audit_actor *actor, const char *line,
			     int passed_fd, FILE *out)
{
	struct control_call k = {.c = c, .actor = actor, .passed_fd = passed_fd, .out = out};
	const char *args = NULL, *refusal;
	const struct control_command *cmd = command_find(line, &args);

	if (!cmd) {
		fputs("error unknown command\n", out);
		return;
	}
	refusal = command_refusal(c, cmd);
	if (refusal)
		fputs(refusal, out);
	else
		cmd->run(&k, args);
}

/*
 * Reads one command line (up to its newline) within 5 s, and an fd the client may pass with
 * it (SCM_RIGHTS; -1 if none). 0, or -1 if no line came.
 */
static int read_request(int fd, char *line, size_t size, int *passed_fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	union {
		struct cmsghdr h;
		char room[CMSG_SPACE(sizeof(int))];
	} ctl;
	size_t got = 0;

	*passed_fd = -1;
	while (got < size - 1 && poll(&pfd, 1, 5000) == 1) {
		struct iovec iov = {.iov_base = line + got, .iov_len = size - 1 - got};
		struct msghdr msg = {.msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = ctl.room,
				     .msg_controllen = sizeof(ctl.room)};
		struct cmsghdr *cm;
		ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);

		if (n <= 0)
			break;
		cm = CMSG_FIRSTHDR(&msg);
		if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			int fd_in;

			memcpy(&fd_in, CMSG_DATA(cm), sizeof(int));
			if (*passed_fd < 0)
				*passed_fd = fd_in;
			else
				close(fd_in); /* one fd per request: never keep more */
		}
		got += (size_t)n;
		line[got] = '\0';
		if (strchr(line, '\n')) {
			line[strcspn(line, "\n")] = '\0';
			return 0;
		}
	}
	return -1;
}

/* Answers r (running its command unless refusal is set), closes its fds and frees it. */
static void control_answer(struct control *c, struct control_req *r, const char *refusal)
{
	char *reply = NULL;
	size_t reply_len = 0;
	FILE *out = open_memstream(&reply, &reply_len);

	if (out && refusal)
		fprintf(out, "error %s\n", refusal);
	else if (out)
		control_dispatch(c, &r->actor, r->line, r->passed_fd, out);
	if (out)
		fclose(out);
	if (reply)
		(void)!send(r->fd, reply, reply_len, MSG_NOSIGNAL);
	free(reply);
	if (r->passed_fd >= 0)
		close(r->passed_fd);
	close(r->fd);
	free(r);
}

/* Hands r to the worker, or refuses it if too many wait. */
static void control_enqueue(struct control *c, struct control_req *r)
{
	int full;

	pthread_mutex_lock(&c->mu);
	full = c->nqueued >= CONTROL_QUEUE_MAX || c->stopping;
	if (!full) {
		r->next = NULL;
		if (c->tail)
			c->tail->next = r;
		else
			c->head = r;
		c->tail = r;
		c->nqueued++;
		pthread_cond_signal(&c->queued);
	}
	pthread_mutex_unlock(&c->mu);
	if (full)
		control_answer(c, r,
			       "too many requests are waiting for this volume; try again later");
}

/* Reads one line from a client and checks who it is; status is answered at once, the
 * rest goes to the worker. Takes fd over. */
static void control_serve_one(struct control *c, int fd)
{
	struct control_req *r = calloc(1, sizeof(*r));
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (!r) {
		close(fd);
		return;
	}
	r->fd = fd;
	r->passed_fd = -1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
	    (cred.uid != 0 && cred.uid != c->uid)) {
		control_answer(c, r, "only root and the user who mounted may control this volume");
		return;
	}
	r->actor = (struct audit_actor){.uid = cred.uid, .pid = cred.pid};
	if (read_request(fd, r->line, sizeof(r->line), &r->passed_fd) != 0) {
		if (r->passed_fd >= 0)
			close(r->passed_fd);
		close(fd);
		free(r);
	} else if (strcmp(r->line, "status") == 0) {
		control_answer(c, r, NULL);
	} else {
		control_enqueue(c, r);
	}
}

/*
 * The rotation policy: when the active KEK is older than the period, rotate by ourselves.
 * Returns how long to sleep before looking again (ms, at most a minute).
 */
static int policy_check(struct control *c)
{
	uint64_t due = keyring_rotation_due(c->info.kr), now = (uint64_t)time(NULL);
	struct rotation_status st;
	uint32_t version;

	if (!due || !c->info.rot || atomic_load(&c->remounted_ro))
		return 60000;
	if (due > now)
		return due - now < 60 ? (int)(due - now) * 1000 : 60000;
	rotation_get_status(c->info.rot, &st);
	if (!st.running && rotation_start(c->info.rot, 0, NULL, NULL, &version) == 0) {
		volume_record_generation(c->info.vol, c->info.kr, c->info.volume_path);
		log_msg(LOG_NOTICE, "rotation policy: the active KEK was due; KEK v%u is active",
			version);
	}
	return 1000;
}

static void *control_thread(void *arg)
{
	struct control *c = arg;
	struct pollfd pfds[2] = {{.fd = c->listen_fd, .events = POLLIN},
				 {.fd = c->stop_pipe[0], .events = POLLIN}};

	pthread_setname_np(pthread_self(), "kekfs-ctl");
	for (;;) {
		int fd;

		if (poll(pfds, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfds[1].revents)
			break;
		if (!(pfds[0].revents & POLLIN))
			continue;
		fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			control_serve_one(c, fd);
	}
	return NULL;
}

/* The next request for the worker, waiting at most ms for one; NULL if none came. Under mu. */
static struct control_req *control_next(struct control *c, int ms)
{
	struct control_req *r;
	struct timespec at;

	clock_gettime(CLOCK_MONOTONIC, &at);
	at.tv_sec += ms / 1000;
	at.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (at.tv_nsec >= 1000000000L) {
		at.tv_sec++;
		at.tv_nsec -= 1000000000L;
	}
	while (!c->head && !c->stopping)
		if (pthread_cond_timedwait(&c->queued, &c->mu, &at) == ETIMEDOUT)
			return NULL;
	r = c->head;
	if (r) {
		c->head = r->next;
		if (!c->head)
			c->tail = NULL;
		c->nqueued--;
	}
	return r;
}

/* Runs queued requests in order, and the rotation policy between them. What is queued when
 * the volume is being unmounted is refused. */
static void *control_worker(void *arg)
{
	struct control *c = arg;

	pthread_setname_np(pthread_self(), "kekfs-ctl-work");
	pthread_mutex_lock(&c->mu);
	while (!c->stopping || c->head) {
		struct control_req *r;
		int ms = 0, stopping = c->stopping;

		pthread_mutex_unlock(&c->mu);
		if (!stopping)
			ms = policy_check(c);
		pthread_mutex_lock(&c->mu);
		r = control_next(c, ms);
		if (!r)
			continue;
		stopping = c->stopping;
		pthread_mutex_unlock(&c->mu);
		control_answer(c, r, stopping ? "the volume is being unmounted" : NULL);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

static int control_listen(struct control *c)
{
	char dirs[CONTROL_SOCKET_DIRS_MAX][PATH_MAX], err[PATH_MAX + 256];
	struct sockaddr_un addr;

	control_socket_dirs(c->uid, 1, dirs);
	c->dir_fd = control_socket_dir_open(dirs[0], c->uid, 1, err, sizeof(err));
	if (c->dir_fd == -EPERM)
		log_msg(LOG_ERR, "no control socket: %s", err);
	if (c->dir_fd < 0)
		return c->dir_fd;
	control_socket_name(c->info.mountpoint, c->name);
	control_socket_addr(c->dir_fd, c->name, &addr);
	unlinkat(c->dir_fd, c->name, 0); /* a stale socket from a daemon that was killed */
	c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->listen_fd >= 0 &&
	    (bind(c->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
	     fchmodat(c->dir_fd, c->name, 0600, 0) != 0 || listen(c->listen_fd, 8) != 0)) {
		close(c->listen_fd);
		c->listen_fd = -1;
	}
	if (c->listen_fd < 0) {
		int rc = -errno;

		close(c->dir_fd);
		return rc;
	}
	return 0;
}

/* Lets the request running end, refuses what waits, and joins the worker. */
static void control_worker_stop(struct control *c)
{
	pthread_mutex_lock(&c->mu);
	c->stopping = 1;
	pthread_cond_signal(&c->queued);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->worker, NULL);
}

/* The worker's lock and condition, on the monotonic clock (timed waits for the policy). */
static void control_sync_init(struct control *c)
{
	pthread_condattr_t ca;

	pthread_mutex_init(&c->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->queued, &ca);
	pthread_condattr_destroy(&ca);
}

struct control *control_start(const struct control_info *info, uid_t uid)
{
	struct control *c = calloc(1, sizeof(*c));
	int rc;

	if (!c)
		return NULL;
	c->info = *info;
	c->uid = uid;
	control_sync_init(c);
	rc = control_listen(c);
	if (rc == 0 && pipe2(c->stop_pipe, O_CLOEXEC) != 0)
		rc = -errno;
	if (rc == 0 && thread_start_deaf(&c->worker, control_worker, c) != 0)
		rc = -EAGAIN;
	if (rc == 0 && thread_start_deaf(&c->thread, control_thread, c) != 0) {
		control_worker_stop(c);
		rc = -EAGAIN;
	}
	if (rc != 0) {
		free(c);
		errno = -rc;
		return NULL;
	}
	return c;
}

void control_stop(struct control *c)
{
	if (!c)
		return;
	(void)!write(c->stop_pipe[1], "x", 1);
	pthread_join(c->thread, NULL);
	control_worker_stop(c);
	close(c->listen_fd);
	close(c->stop_pipe[0]);
	close(c->stop_pipe[1]);
	unlinkat(c->dir_fd, c->name, 0);
	close(c->dir_fd);
	pthread_cond_destroy(&c->queued);
	pthread_mutex_destroy(&c->mu);
	free(c);
}
