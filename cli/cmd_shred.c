/*
 * kekfs shred: erase files by destroying their keys (volume/shred.c does the work). Paths under a
 * mount point go to the daemon through its control socket; an unmounted backing directory
 * is unlocked here. --seal destroys every older KEK, --verify judges a copy of a backing file.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "../volume/log.h"
#include "../volume/shred.h"
#include "cli.h"
#include "extopts.h"
#include "mounts.h"
#include "target.h"
#include "unlock.h"

#define VERIFY_CAN_OPEN 2 /* exit status of --verify when the copy still opens */

struct shred_opts {
	struct secret_source src;
	const char *keyring;
	const char *verify; /* FILE-COPY */
	int recursive, seal;
	char **operands;
	int noperands;
};

static const char shred_usage[] =
    "Usage: kekfs shred [-r] PATH...\n"
    "       kekfs shred [-r] [UNLOCK OPTIONS] BACKING PATH...\n"
    "       kekfs shred --seal MOUNTPOINT|BACKING\n"
    "       kekfs shred --verify FILE-COPY MOUNTPOINT|BACKING\n"
    "\n"
    "Crypto-shreds files: both wrap slots of each file's header are overwritten with random\n"
    "bytes and synced, its key is dropped from memory, open handles fail with EKEYREVOKED,\n"
    "every name of it kekfs can find is removed, and the audit log records it (file id, KEK\n"
    "version, a keyed hash of the path). PATHs are under a kekfs mount point, or, for an\n"
    "unmounted BACKING directory, paths inside the volume.\n"
    "\n"
    "  -r, --recursive          shred every file of a directory tree and remove the tree\n"
    "  --seal                   rotate the KEK, re-wrap every remaining file and destroy every\n"
    "                           older KEK: copies made before a shred can no longer be opened\n"
    "  --verify FILE-COPY       can this keyring still open this copy of a backing file?\n"
    "                           (exit 0: no; 2: yes)\n" UNLOCK_USAGE
    "  -h, --help               show this help\n";

static int shred_parse(int argc, char **argv, struct shred_opts *o)
{
	static const struct option longopts[] = {
	    UNLOCK_OPTIONS,
	    {"recursive", no_argument, NULL, 'r'},
	    {"seal", no_argument, NULL, 'S'},
	    {"verify", required_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c, u;

	memset(o, 0, sizeof(*o));
	optind = 1;
	opterr = 0; /* getopt's own message would begin with a bare "shred:" */
	while ((c = getopt_long(argc, argv, ":rh", longopts, NULL)) != -1) {
		if ((u = unlock_option(c, optarg, &o->src, NULL, &o->keyring)) != 0) {
			if (u < 0)
				cli_usage("see 'kekfs shred --help'");
		} else if (c == 'r')
			o->recursive = 1;
		else if (c == 'S')
			o->seal = 1;
		else if (c == 'V')
			o->verify = optarg;
		else if (c == 'h')
			fputs(shred_usage, stdout), exit(0);
		else
			cli_bad_option(c, argv, "shred");
	}
	o->operands = argv + optind;
	o->noperands = argc - optind;
	if ((o->seal || o->verify) && o->noperands != 1)
		cli_usage(
		    "--seal and --verify take one mount point or backing directory: see 'kekfs "
		    "shred --help'");
	if (o->noperands < 1)
		cli_usage("shred needs at least one path: see 'kekfs shred --help'");
	return 0;
}

/* ---- the daemon's side ---- */

/* Shreds one path under a mount point through its daemon. */
static int shred_online(const struct shred_opts *o, const char *path)
{
	struct kekfs_mount m;
	char abs[PATH_MAX], cmd[PATH_MAX + 16], *body = NULL;
	const char *rel;
	int rc = target_absolute(path, abs, sizeof(abs));

	if (rc != 0)
		return cli_error("%s: %s", path, strerror(-rc));
	if (!target_mount_of(abs, &m))
		return cli_error("%s: not inside a mounted kekfs volume (for an unmounted one: "
				 "kekfs shred --key-file F BACKING PATH)",
				 path);
	if (target_mount_read_only(m.mountpoint))
		return cli_error("%s is mounted read-only: shredding needs a read-write mount",
				 m.mountpoint);
	rel = target_rel(path, abs, &m, "shred");
	if (!rel)
		return -1;
	snprintf(cmd, sizeof(cmd), "shred %d %s", o->recursive, rel);
	if (target_ask(&m, cmd, &body) != 0)
		return -1;
	fputs(body, stdout);
	free(body);
	return 0;
}

/* ---- an unmounted volume ---- */

struct offline {
	struct volume vol;
	struct keyring *kr;
	struct volume_paths paths;
	struct rotation *rot;
	struct shred *shred;
	int fd;
};

static int offline_open(const struct shred_opts *o, const char *backing, struct offline *v)
{
	memset(v, 0, sizeof(*v));
	v->fd = -1;
	log_set_level(LOG_ERR);
	if (target_lock(backing, VOLUME_LOCK_EXCLUSIVE, "shred", TARGET_LOCK_HINT) != 0 ||
	    volume_unlock_all(backing, o->keyring, &o->src, "shred", &v->vol, &v->kr) != 0)
		return -1;
	volume_paths_get(backing, o->keyring, &v->paths);
	v->fd = open(backing, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (v->fd >= 0)
		v->rot = rotation_new(&(struct rotation_config){.backing_fd = v->fd,
								.volume_path = v->paths.volume,
								.keyring_path = v->paths.keyring,
								.vol = &v->vol,
								.kr = v->kr,
								.audit_dir = v->paths.audit_dir});
	if (v->rot)
		v->shred = shred_new(&(struct shred_config){.backing_fd = v->fd,
							    .vol = &v->vol,
							    .kr = v->kr,
							    .keyring_path = v->paths.keyring,
							    .audit_dir = v->paths.audit_dir,
							    .rot = v->rot});
	if (!v->shred)
		return cli_error("cannot open %s: %s", backing, strerror(errno));
	return volume_finish_interrupted(v->fd, &v->vol, v->kr, backing);
}

static void offline_close(struct offline *v)
{
	shred_free(v->shred);
	rotation_free(v->rot);
	if (v->fd >= 0)
		close(v->fd);
	keyring_free(v->kr);
	volume_clear(&v->vol);
}

static int shred_offline(const struct shred_opts *o, const char *backing)
{
	struct offline v;
	struct audit_actor self = {getuid(), getpid()};
	char err[PATH_MAX + 128];
	int failed = 0;

	if (offline_open(o, backing, &v) != 0) {
		offline_close(&v);
		return 1;
	}
	for (int i = 1; i < o->noperands; i++) {
		const char *rel = o->operands[i];

		while (*rel == '/')
			rel++;
		if (shred_path(v.shred, rel, o->recursive, &self, stdout, err, sizeof(err)) != 0)
			failed = 1, cli_error("%s", err);
	}
	offline_close(&v);
	return failed;
}

/* ---- seal ---- */

/* Shows the seal's progress until the daemon says it finished or failed. */
static int seal_follow(const struct kekfs_mount *m)
{
	const struct timespec tick = {0, 100 * 1000 * 1000};
	char *body = NULL, last[512] = "";
	int tty = isatty(STDOUT_FILENO), rc = -1;

	while (target_ask(m, "seal status", &body) == 0) {
		if (strncmp(body, "seal: finished", 14) == 0 ||
		    strncmp(body, "seal: failed", 12) == 0) {
			printf("%s%s", tty ? "\n" : "", body); /* with the guarantee */
			rc = strncmp(body, "seal: finished", 14) == 0 ? 0 : -1;
			break;
		}
		body[strcspn(body, "\n")] = '\0';
		if (strcmp(body, last) != 0) {
			printf(tty ? "\r%s" : "%s\n", body);
			fflush(stdout);
			snprintf(last, sizeof(last), "%s", body);
		}
		free(body);
		body = NULL;
		nanosleep(&tick, NULL);
	}
	free(body);
	return rc;
}

static int seal_online(const struct kekfs_mount *m)
{
	char *body = NULL;

	if (target_mount_read_only(m->mountpoint))
		return cli_error("%s is mounted read-only: sealing needs a read-write mount",
				 m->mountpoint),
		       1;
	if (target_ask(m, "seal", &body) != 0)
		return 1;
	fputs(body, stdout);
	free(body);
	if (seal_follow(m) != 0)
		return cli_fail("the seal did not finish (see above and the daemon's log)");
	return 0;
}

static int seal_offline(const struct shred_opts *o, const char *backing)
{
	struct offline v;
	struct audit_actor self = {getuid(), getpid()};
	struct rotation_status st;
	const struct timespec tick = {0, 100 * 1000 * 1000};
	char msg[512];
	uint32_t version;
	int rc = 1;

	if (offline_open(o, backing, &v) != 0)
		goto out;
	if (seal_pending(v.shred))
		puts("resuming an unfinished seal"), rc = seal_resume(v.shred);
	else
		rc = seal_start(v.shred, &self, &version);
	if (rc != 0) {
		cli_error("seal failed to start: %s", strerror(-rc));
		rc = 1;
		goto out;
	}
	for (rotation_get_status(v.rot, &st); st.running; rotation_get_status(v.rot, &st))
		nanosleep(&tick, NULL);
	rc = seal_wait(v.shred, msg, sizeof(msg));
	puts(msg);
	if (rc == 0)
		seal_guarantee_print(v.shred, stdout);
	else
		cli_error("the seal did not finish; run it again to resume");
	rc = rc != 0;
out:
	offline_close(&v);
	return rc;
}

/* ---- verify ---- */

static int verify_copy(const struct shred_opts *o, const char *target)
{
	uint8_t hdr[HEADER_LEN];
	char hex[2 * HEADER_LEN + 1], cmd[sizeof(hex) + 16], msg[256], real[PATH_MAX], *body = NULL;
	struct kekfs_mount m;
	struct offline v;
	int fd = open(o->verify, O_RDONLY | O_CLOEXEC), mounted = 0, can;
	ssize_t n = fd >= 0 ? pread(fd, hdr, sizeof(hdr), 0) : -1;

	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)sizeof(hdr))
		return cli_error("%s: %s", o->verify,
				 n < 0 ? strerror(errno) : "shorter than a kekfs header"),
		       1;
	if (kekfs_mount_find(target, 0, &m) ||
	    (target_is_backing(target, real, &m, &mounted) && mounted)) {
		sodium_bin2hex(hex, sizeof(hex), hdr, sizeof(hdr));
		snprintf(cmd, sizeof(cmd), "shred-verify %s", hex);
		if (target_ask(&m, cmd, &body) != 0)
			return 1;
		body[strcspn(body, "\n")] = '\0';
		snprintf(msg, sizeof(msg), "%s", body);
		free(body);
	} else {
		if (offline_open(o, target, &v) != 0)
			return offline_close(&v), 1;
		shred_verify_header(&v.vol, v.kr, hdr, msg, sizeof(msg));
		offline_close(&v);
	}
	can = strncmp(msg, "CAN ", 4) == 0;
	printf("%s: %s\n", o->verify, msg);
	return can ? VERIFY_CAN_OPEN : 0;
}

int cmd_shred(int argc, char **argv)
{
	struct shred_opts o;
	struct kekfs_mount m;
	char real[PATH_MAX];
	int mounted = 0, failed = 0;

	if (shred_parse(argc, argv, &o) != 0)
		return 1;
	if (o.verify)
		return verify_copy(&o, o.operands[0]);
	if (target_is_backing(o.operands[0], real, &m, &mounted) && mounted && !o.seal)
		return cli_error("%s is mounted on %s: shred paths under %s", o.operands[0],
				 m.mountpoint, m.mountpoint),
		       1;
	if (o.seal) {
		if (realpath(o.operands[0], real) && kekfs_mount_find(real, 0, &m))
			return seal_online(&m);
		if (target_is_backing(o.operands[0], real, &m, &mounted))
			return mounted ? seal_online(&m) : seal_offline(&o, real);
		return cli_error("%s: not a kekfs mount point or backing directory", o.operands[0]),
		       1;
	}
	if (target_is_backing(o.operands[0], real, &m, &mounted) && o.noperands < 2)
		return cli_fail("give the paths inside the volume to shred after %s", real);
	if (target_is_backing(o.operands[0], real, &m, &mounted))
		return shred_offline(&o, real);
	for (int i = 0; i < o.noperands; i++)
		failed |= shred_online(&o, o.operands[i]) != 0;
	return failed;
}
