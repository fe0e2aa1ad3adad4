#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "../crypto/aead.h"
#include "../crypto/keywrap.h"
#include "../crypto/secmem.h"
#include "census.h"
#include "log.h"
#include "thread.h"

#define CONTROL_LINE_MAX (PATH_MAX + 64) /* "shred 1 " and a path */
#define CONTROL_REPLY_MAX 16384
#define CONTROL_QUEUE_MAX 32 /* requests waiting for the worker; more are refused */
#define SOCKET_NAME_MAX 40   /* 32 hex and ".sock" */
#define SOCKET_DIRS_MAX 3

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
	char name[SOCKET_NAME_MAX];
};

/*
 * Where the control sockets of uid's daemons are, in the order a client looks; a daemon
 * uses the first it is given. Root's are in /run/kekfs. Another user's go in
 * $XDG_RUNTIME_DIR/kekfs when it is set, else in /tmp/kekfs-UID; a client also looks in
 * /run/user/UID/kekfs, which is what $XDG_RUNTIME_DIR usually is (root asking about another
 * user's mount has not got that user's environment).
 */
static int control_dirs(uid_t uid, int for_daemon, char dirs[SOCKET_DIRS_MAX][PATH_MAX])
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
static void socket_name(const char *mountpoint, char out[SOCKET_NAME_MAX])
{
	uint8_t hash[16];
	char hex[33];

	crypto_generichash(hash, sizeof(hash), (const uint8_t *)mountpoint, strlen(mountpoint),
			   NULL, 0);
	sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
	snprintf(out, SOCKET_NAME_MAX, "%s.sock", hex);
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
static int socket_dir_open(const char *dir, uid_t uid, int create, char *err, size_t err_size)
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
static void socket_addr(int dir_fd, const char *name, struct sockaddr_un *addr)
{
	*addr = (struct sockaddr_un){.sun_family = AF_UNIX};
	snprintf(addr->sun_path, sizeof(addr->sun_path), "/proc/self/fd/%d/%s", dir_fd, name);
}

static const char *kek_state_name(int state)
{
	static const char *const names[] = {
	    "unknown", "active", "decrypt-only", "retired", "pending destruction", "destroyed"};

	return state >= 0 && state <= KEK_DESTROYED ? names[state] : "unknown";
}

static void print_time(FILE *out, uint64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	char buf[32];

	gmtime_r(&tt, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M UTC", &tm);
	fputs(buf, out);
}

static void rewrap_status_print(FILE *out, struct rotation *rot)
{
	struct rotation_status st;
	double rate;

	rotation_get_status(rot, &st);
	if (st.target == 0) {
		fputs("re-wrap: none since mount\n", out);
		return;
	}
	rate = st.elapsed > 0 ? (double)st.done / st.elapsed : 0;
	if (st.running) {
		fprintf(out, "re-wrap: running to v%u: %llu of %llu files (%.0f%%), %.0f files/s",
			st.target, (unsigned long long)st.done, (unsigned long long)st.total,
			st.total ? 100.0 * (double)st.done / (double)st.total : 0.0, rate);
		if (rate > 0 && st.total >= st.done)
			fprintf(out, ", ETA %.0f s", (double)(st.total - st.done) / rate);
		fputc('\n', out);
		return;
	}
	fprintf(out,
		"re-wrap: finished to v%u: %llu files, %llu re-wrapped, %llu failed, name key %s, "
		"%.1f s\n",
		st.target, (unsigned long long)st.done, (unsigned long long)st.rewrapped,
		(unsigned long long)st.failed, st.name_key_done ? "done" : "NOT done", st.elapsed);
}

/* "rotation policy: every 90 days; next due 2027-02-20 (in 89 days)", or OVERDUE. */
static void policy_print(FILE *out, const struct keyring *kr)
{
	uint64_t period = keyring_rotation_period(kr), due = keyring_rotation_due(kr);
	uint64_t now = (uint64_t)time(NULL);

	if (!period) {
		fputs("rotation policy: none ('kekfs keys policy --rotate-every 90d' sets one)\n",
		      out);
		return;
	}
	fprintf(out, "rotation policy: every %llu s (%.1f days); next due ",
		(unsigned long long)period, (double)period / 86400.0);
	print_time(out, due);
	if (due <= now)
		fprintf(out, " -- OVERDUE by %llu s\n", (unsigned long long)(now - due));
	else
		fprintf(out, " (in %.1f days)\n", (double)(due - now) / 86400.0);
}

void volume_status_print(FILE *out, const struct control_info *info)
{
	struct kek_info k;

	fprintf(out, "backing: %s\n", info->backing);
	fprintf(out, "mounted on: %s\n", info->mountpoint ? info->mountpoint : "(not mounted)");
	fprintf(out, "cipher: %s, chunk size %u\n", aead_cipher_name(info->vol->cipher),
		1u << info->vol->chunk_shift);
	fprintf(out, "keyring generation: %llu\n",
		(unsigned long long)keyring_generation(info->kr));
	for (size_t i = 0; i < keyring_kek_count(info->kr); i++) {
		keyring_kek_info(info->kr, i, &k);
		fprintf(out, "KEK v%u: %s, created ", k.version, kek_state_name(k.state));
		print_time(out, k.created);
		fputc('\n', out);
	}
	fprintf(out, "name key: on KEK v%u\n", info->vol->cur.kek_version);
	policy_print(out, info->kr);
	if (info->rot)
		rewrap_status_print(out, info->rot);
}

/* "keys CHANGE VERSION FORCE WHEN": a census-guarded change of an old KEK's state. */
static void control_keys(struct control *c, const struct audit_actor *actor, const char *args,
			 FILE *out)
{
	unsigned change, version, force;
	unsigned long long when;
	char msg[8192];

	if (sscanf(args, "%u %u %u %llu", &change, &version, &force, &when) != 4 ||
	    change > KEK_DESTROY_NOW) {
		fputs("error malformed key command\n", out);
		return;
	}
	if (census_change_kek(c->info.backing_fd, c->info.vol, c->info.kr, c->info.keyring_path,
			      c->info.audit_dir, actor, version, (enum kek_change)change, when,
			      (int)force, msg, sizeof(msg)) != 0) {
		fprintf(out, "error %s\n", msg);
		return;
	}
	if (volume_record_generation(c->info.vol, c->info.kr, c->info.volume_path) != VOL_OK)
		log_msg(LOG_ERR, "cannot record the keyring generation in %s", c->info.volume_path);
	log_msg(LOG_NOTICE, "%s", msg);
	fprintf(out, "ok\n%s\n", msg);
}

/* "shred R PATH", "shred-verify HEX", "seal", "seal status": the work is in fs/shred.c. */
static void control_shred(struct control *c, const struct audit_actor *actor, const char *cmd,
			  FILE *out)
{
	uint8_t hdr[HEADER_LEN];
	char *body = NULL, err[PATH_MAX + 128];
	size_t len = 0;
	uint32_t version;
	FILE *rep;
	int rc;

	if (!c->info.shred) {
		fputs("error the volume is mounted read-only: shredding needs a read-write mount\n",
		      out);
	} else if (strncmp(cmd, "shred-verify ", 13) == 0) {
		if (sodium_hex2bin(hdr, sizeof(hdr), cmd + 13, strlen(cmd + 13), NULL, NULL,
				   NULL) != 0)
			fputs("error malformed header\n", out);
		else {
			shred_verify_header(c->info.vol, c->info.kr, hdr, err, sizeof(err));
			fprintf(out, "ok\n%s\n", err);
		}
	} else if (strncmp(cmd, "shred ", 6) == 0 && (cmd[6] == '0' || cmd[6] == '1') &&
		   cmd[7] == ' ') {
		rep = open_memstream(&body, &len);
		rc = rep ? shred_path(c->info.shred, cmd + 8, cmd[6] == '1', actor, rep, err,
				      sizeof(err))
			 : -ENOMEM;
		if (rep)
			fclose(rep);
		if (rc != 0)
			fprintf(out, "error %s\n", rc == -ENOMEM && !rep ? "out of memory" : err);
		else
			fprintf(out, "ok\n%s", body ? body : "");
		free(body);
	} else if (strcmp(cmd, "seal") == 0) {
		rc = seal_start(c->info.shred, actor, &version);
		if (rc != 0)
			fprintf(out, "error seal failed to start: %s\n", strerror(-rc));
		else
			fprintf(out,
				"ok\nKEK v%u is active; re-wrapping every file, then destroying "
				"every older KEK\n",
				version);
	} else if (strcmp(cmd, "seal status") == 0) {
		fputs("ok\n", out);
		seal_status(c->info.shred, out);
	} else {
		fputs("error unknown shred command\n", out);
	}
}

/* "redata PATH": re-encrypts one file under a fresh DEK (fs/redata.c). */
static void control_redata(struct control *c, const struct audit_actor *actor, const char *rel,
			   FILE *out)
{
	char err[PATH_MAX + 128];

	if (!c->info.redata)
		fputs("error the volume is mounted read-only: re-encryption needs a read-write "
		      "mount\n",
		      out);
	else if (redata_file(c->info.redata, rel, actor, err, sizeof(err)) != 0)
		fprintf(out, "error %s\n", err);
	else
		fprintf(out, "ok\n%s: re-encrypted under a new data key (KEK v%u)\n", rel,
			keyring_active_version(c->info.kr));
}

/* Starts a rotation to a new KEK (random, or the customer's material) and says so. */
static void control_rotate(struct control *c, const struct audit_actor *actor, int force,
			   const uint8_t *material, FILE *out)
{
	uint32_t version;
	int rc = rotation_start(c->info.rot, force, actor, material, &version);

	if (rc == -EBUSY)
		fputs("error a re-wrap is still running (see 'kekfs status'); wait for it, or use "
		      "--force\n",
		      out);
	else if (rc != 0)
		fprintf(out, "error rotation failed: %s; nothing changed\n", strerror(-rc));
	else
		fprintf(out,
			"ok\nKEK v%u is active; re-wrapping every file header in the background "
			"('kekfs status' shows progress)\n",
			version);
}

/*
 * "import": BYOK on a mounted volume. The key file comes as an fd passed with the command
 * (SCM_RIGHTS), opened by the client with its own rights; its 32 bytes go straight into
 * secure memory and become the next KEK.
 */
static void control_import(struct control *c, const struct audit_actor *actor, int force,
			   int key_fd, FILE *out)
{
	uint8_t *material = secmem_alloc(KEYWRAP_KEY_LEN + 1);
	struct stat st;
	ssize_t n = -1;

	if (material && key_fd >= 0 && fstat(key_fd, &st) == 0 && S_ISREG(st.st_mode))
		n = read(key_fd, material, KEYWRAP_KEY_LEN + 1);
	if (!material)
		fputs("error out of secure memory\n", out);
	else if (n != KEYWRAP_KEY_LEN)
		fprintf(out, "error invalid key material: expected 32 bytes, got %s%zd\n",
			n > KEYWRAP_KEY_LEN ? "more than " : "", n > KEYWRAP_KEY_LEN ? 32 : n);
	else
		control_rotate(c, actor, force, material, out);
	secmem_free(material);
}

/* Runs one command; the reply goes to out, which the caller sends. */
static void control_dispatch(struct control *c, const struct audit_actor *actor, const char *cmd,
			     int passed_fd, FILE *out)
{
	unsigned long lines;
	char msg[512];
	int changes = strncmp(cmd, "rotate", 6) == 0 || strncmp(cmd, "keys ", 5) == 0 ||
		      strncmp(cmd, "policy ", 7) == 0 || strncmp(cmd, "import", 6) == 0;

	if (changes && !c->info.rot) {
		fputs("error the volume is mounted read-only: key changes are refused\n", out);
		return;
	}

	if (strcmp(cmd, "status") == 0) {
		fputs("ok\n", out);
		volume_status_print(out, &c->info);
		return;
	}
	if (strcmp(cmd, "rotate") == 0 || strcmp(cmd, "rotate force") == 0) {
		control_rotate(c, actor, strcmp(cmd, "rotate force") == 0, NULL, out);
		return;
	}
	if (strcmp(cmd, "import") == 0 || strcmp(cmd, "import force") == 0) {
		control_import(c, actor, strcmp(cmd, "import force") == 0, passed_fd, out);
		return;
	}
	if (c->info.shred && seal_running(c->info.shred) &&
	    (strncmp(cmd, "rotate", 6) == 0 || strncmp(cmd, "keys ", 5) == 0 ||
	     strcmp(cmd, "seal") == 0 || strncmp(cmd, "redata ", 7) == 0)) {
		fputs(
		    "error a seal is running (see 'kekfs shred --seal' or the log); wait for it\n",
		    out);
		return;
	}
	if (strncmp(cmd, "shred", 5) == 0 || strncmp(cmd, "seal", 4) == 0) {
		control_shred(c, actor, cmd, out);
		return;
	}
	if (strncmp(cmd, "redata ", 7) == 0) {
		control_redata(c, actor, cmd + 7, out);
		return;
	}
	if (strncmp(cmd, "keys ", 5) == 0) {
		control_keys(c, actor, cmd + 5, out);
		return;
	}
	if (strncmp(cmd, "policy ", 7) == 0) {
		unsigned long long seconds = strtoull(cmd + 7, NULL, 10);
		int kr_rc = keyring_set_rotation_period(c->info.kr, c->info.keyring_path, seconds);

		if (kr_rc != KR_OK)
			fprintf(out, "error %s\n", keyring_strerror(kr_rc));
		else
			fputs("ok\nrotation policy saved\n", out);
		volume_record_generation(c->info.vol, c->info.kr, c->info.volume_path);
		return;
	}
	if (strcmp(cmd, "audit verify") == 0) {
		if (audit_verify(c->info.audit_dir, c->info.kr, &lines, msg, sizeof(msg)) != 0)
			fprintf(out, "error audit log: %s\n", msg);
		else
			fprintf(out, "ok\naudit log: %s\n", msg);
		return;
	}
	fprintf(out, "error unknown command\n");
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

	if (!due || !c->info.rot)
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
	char dirs[SOCKET_DIRS_MAX][PATH_MAX], err[PATH_MAX + 256];
	struct sockaddr_un addr;

	control_dirs(c->uid, 1, dirs);
	c->dir_fd = socket_dir_open(dirs[0], c->uid, 1, err, sizeof(err));
	if (c->dir_fd == -EPERM)
		log_msg(LOG_ERR, "no control socket: %s", err);
	if (c->dir_fd < 0)
		return c->dir_fd;
	socket_name(c->info.mountpoint, c->name);
	socket_addr(c->dir_fd, c->name, &addr);
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

	socket_addr(dir_fd, name, &addr);
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
	char dirs[SOCKET_DIRS_MAX][PATH_MAX], name[SOCKET_NAME_MAX];
	int n = control_dirs(uid, 0, dirs);

	socket_name(mountpoint, name);
	for (int i = 0; i < n; i++) {
		int dir_fd = socket_dir_open(dirs[i], uid, 0, err, err_size), found, fd;

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
		if (body)
			fputs(body + 1, out);
		return 0;
	}
	if (body)
		*body = '\0';
	snprintf(err, err_size, "%s", strncmp(buf, "error ", 6) == 0 ? buf + 6 : "no answer");
	return -1;
}
