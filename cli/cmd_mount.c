/*
 * kekfs mount: unlock, mount, and only then return. Without -f the work happens in a child
 * that tells the waiting parent how it went, so errors reach the terminal and the exit
 * status, and keys never exist in the parent.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "../backing/backing.h"
#include "../crypto/secmem.h"
#include "../fs/control.h"
#include "../fs/session.h"
#include "../volume/log.h"
#include "../volume/namekey.h"
#include "../volume/redata.h"
#include "../volume/rotation.h"
#include "../volume/shred.h"
#include "cli.h"
#include "cmd_remount.h"
#include "extopts.h"
#include "mount_helper.h"
#include "mounts.h"
#include "notify.h"
#include "secret.h"
#include "target.h"
#include "unlock.h"

static const char mount_usage[] =
    "Usage: kekfs mount [OPTIONS] BACKING MOUNTPOINT\n"
    "\n"
    "Unlocks the volume in BACKING and mounts it at MOUNTPOINT. Returns once the mount is\n"
    "ready (exit 0), or prints what is wrong and exits non-zero with nothing mounted.\n"
    "\n"
    "  -f, --foreground         stay in the foreground, log to stderr\n"
    "  -o OPTS                  comma-separated: allow_other (implies default_permissions),\n"
    "                           default_permissions, ro, keyfile=F, passfile=F, keyring=P,\n"
    "                           key-command=PROG [ARGS] (prints a 32-byte key or 64 hex\n"
    "                           characters), passphrase-command=PROG [ARGS] (prints the\n"
    "                           passphrase), key-command-timeout=SECONDS (30, for both),\n"
    "                           credential=NAME (a systemd credential holding the key),\n"
    "                           nosuid, nodev, noexec; nofail, _netdev, x-systemd.* and\n"
    "                           the like are accepted and ignored; remount with ro or rw\n"
    "                           (mount -o remount,ro MOUNTPOINT) switches a mount\n"
    "  --key-file FILE          unlock with a 32-byte key file\n"
    "  --rsa-private PRIV.pem   unlock with the private key of an RSA slot\n"
    "  --passphrase-file FILE   unlock with the passphrase on the first line of FILE\n"
    "  --passphrase-command 'PROG [ARGS]'  with the first line PROG prints (no shell;\n"
    "                           -o passphrase-command=PROG [ARGS]), as gocryptfs -extpass\n"
    "                           (without either, the passphrase is asked on the terminal)\n"
    "  --pkcs11-unlock[=MODULE] unlock with the keyring's PKCS#11 token slot (-o pkcs11);\n"
    "                           with MODULE, only if the slot names that module\n"
    "  --pin-file FILE          the token's PIN (-o pinfile=F); else the credential\n"
    "                           kekfs.pin (--pin-credential NAME, -o pin-credential=N),\n"
    "                           else the terminal\n"
    "  --kms-unlock[=PROGRAM]   unlock with the keyring's KMS plugin slot (-o kms); with\n"
    "                           PROGRAM, only if the slot runs that program\n"
    "  --kms-timeout SECONDS    how long the plugin may take (30)\n"
    "                           (a token or KMS slot is never used without one of these)\n"
    "  --allow-rollback         accept a keyring older than this host or the volume has\n"
    "                           seen (-o allow-rollback): destroyed KEKs come back\n"
    "  --keyring PATH           the keyring, if it is kept outside BACKING\n"
    "  --log-file FILE          append the daemon's log to FILE (default: syslog)\n"
    "  -h, --help               show this help\n"
    "\n"
    "Without a key option: $CREDENTIALS_DIRECTORY/kekfs.key or kekfs.passphrase, else the\n"
    "terminal, else (under systemd) systemd-ask-password. With $NOTIFY_SOCKET set, READY=1\n"
    "is sent once mounted. Unmount with 'kekfs umount MOUNTPOINT', 'umount MOUNTPOINT' or\n"
    "SIGTERM. See kekfs(1) and mount.kekfs(8).\n";

struct mount_opts {
	struct secret_source src;
	const char *keyring;
	const char *log_file;
	int foreground;
	int allow_other, default_permissions, read_only;
	int ro_backing;	       /* read-only because the backing file system is */
	char kernel_opts[256]; /* nosuid, nodev, ... passed on to FUSE as they are */
	char backing[PATH_MAX], mountpoint[PATH_MAX];
};

/* Key sources for unattended mounts, and the options mount(8) and systemd pass along. */
static int parse_o_more(struct mount_opts *o, char *opt)
{
	size_t used = strlen(o->kernel_opts);
	int ext;

	if (strncmp(opt, "key-command=", 12) == 0)
		o->src.key_command = opt + 12;
	else if (strncmp(opt, "passphrase-command=", 19) == 0)
		o->src.passphrase_command = opt + 19;
	else if (strncmp(opt, "key-command-timeout=", 20) == 0) {
		char *end;
		long s = strtol(opt + 20, &end, 10);
		if (*end || s < 1 || s > 3600)
			return cli_error("key-command-timeout must be 1 to 3600 seconds, not '%s'",
					 opt + 20);
		o->src.key_command_timeout = (int)s;
	} else if (strncmp(opt, "credential=", 11) == 0)
		o->src.credential = opt + 11;
	else if ((ext = external_mount_option(opt, &o->src)) != 0)
		return ext < 0 ? -1 : 0;
	else if (mount_opt_generic(opt) == GENERIC_KERNEL) {
		if (used + strlen(opt) + 2 > sizeof(o->kernel_opts))
			return cli_error("too many mount options");
		snprintf(o->kernel_opts + used, sizeof(o->kernel_opts) - used, ",%s", opt);
	} else if (mount_opt_generic(opt) == GENERIC_UNKNOWN)
		return cli_error("unknown mount option '%s': see 'kekfs mount --help'", opt);
	return 0;
}

/* Splits -o into kekfs's own options and the FUSE mount options it passes on. */
static int parse_o(struct mount_opts *o, char *opts)
{
	char *save = NULL;

	for (char *opt = strtok_r(opts, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
		if (strncmp(opt, "keyfile=", 8) == 0)
			o->src.key_file = opt + 8;
		else if (strncmp(opt, "passfile=", 9) == 0)
			o->src.passphrase_file = opt + 9;
		else if (strncmp(opt, "keyring=", 8) == 0)
			o->keyring = opt + 8;
		else if (strcmp(opt, "allow_other") == 0)
			o->allow_other = o->default_permissions = 1;
		else if (strcmp(opt, "default_permissions") == 0)
			o->default_permissions = 1;
		else if (strcmp(opt, "ro") == 0)
			o->read_only = 1;
		else if (strcmp(opt, "rw") == 0)
			o->read_only = 0;
		else if (parse_o_more(o, opt) != 0)
			return -1;
	}
	return 0;
}

/*
 * A backing directory on a read-only file system (a snapshot, read-only media) mounts
 * read-only, so that nothing at mount tries to write it: no audit record, no re-wrap, no
 * key expiry.
 */
static void read_only_backing(struct mount_opts *o)
{
	struct statvfs sv;

	if (!o->read_only && statvfs(o->backing, &sv) == 0 && (sv.f_flag & ST_RDONLY))
		o->read_only = o->ro_backing = 1;
}

/* BACKING resolved into real, if it is a directory this user may read: else one line. */
static int backing_usable(const char *backing, char *real)
{
	struct stat st;

	if (!realpath(backing, real))
		return errno == ENOTCONN
			   ? target_real(backing, real)
			   : cli_error("backing directory %s: %s", backing, strerror(errno));
	if (stat(real, &st) != 0 || !S_ISDIR(st.st_mode))
		return cli_error("backing directory %s is not a directory: give the directory "
				 "'kekfs init' made",
				 backing);
	if (access(real, R_OK | X_OK) != 0)
		return cli_error(
		    "backing directory %s: %s: mount it as a user who may read it", backing,
		    errno == EACCES || errno == EPERM ? "permission denied" : strerror(errno));
	return 0;
}

static int mount_parse(int argc, char **argv, struct mount_opts *o)
{
	static const struct option longopts[] = {
	    {"foreground", no_argument, NULL, 'f'},
	    UNLOCK_OPTIONS,
	    {"log-file", required_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c, u;

	memset(o, 0, sizeof(*o));
	opterr = 0; /* getopt's own message would begin with a bare "mount:" */
	while ((c = getopt_long(argc, argv, ":fo:h", longopts, NULL)) != -1) {
		if ((u = unlock_option(c, optarg, &o->src, NULL, &o->keyring)) != 0) {
			if (u < 0)
				cli_usage("see 'kekfs mount --help'");
			continue;
		}
		switch (c) {
		case 'f':
			o->foreground = 1;
			break;
		case 'o':
			if (parse_o(o, optarg) != 0)
				exit(2); /* a usage error, already told */
			break;
		case 'l':
			o->log_file = optarg;
			break;
		case 'h':
			fputs(mount_usage, stdout);
			exit(0);
		default:
			cli_bad_option(c, argv, "mount");
		}
	}
	if (optind != argc - 2)
		cli_usage("mount takes BACKING and MOUNTPOINT: see 'kekfs mount --help'");
	if (backing_usable(argv[optind], o->backing) != 0)
		return -1;
	if (!realpath(argv[optind + 1], o->mountpoint))
		return errno == ENOTCONN
			   ? target_real(argv[optind + 1], o->mountpoint)
			   : cli_error("mount point %s does not exist: create it with "
				       "'mkdir %s'",
				       argv[optind + 1], argv[optind + 1]);
	o->src.label = o->backing;
	read_only_backing(o);
	return 0;
}

/* The mount point must be an empty directory that nothing is mounted on. */
static int mountpoint_check(const char *mp)
{
	struct stat st;
	struct dirent *de;
	DIR *d;

	if (stat(mp, &st) != 0 || !S_ISDIR(st.st_mode))
		return cli_error("mount point %s is not a directory", mp);
	if (path_is_mounted(mp))
		return cli_error(
		    "%s is already a mount point: unmount it first ('kekfs umount %s')", mp, mp);
	d = opendir(mp);
	if (!d)
		return cli_error("cannot open mount point %s: %s", mp, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			closedir(d);
			return cli_error("mount point %s is not empty: mount on an empty directory",
					 mp);
		}
	}
	closedir(d);
	return 0;
}

static int fuse_device_check(void)
{
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);

	if (fd < 0 && (errno == EACCES || errno == EPERM))
		return cli_error("/dev/fuse is there but this user may not open it (%s): ask an "
				 "administrator for access to it, or mount as root",
				 strerror(errno));
	if (fd < 0)
		return cli_error("/dev/fuse is not available (%s): install fuse3 and load the fuse "
				 "module ('modprobe fuse')",
				 strerror(errno));
	close(fd);
	return 0;
}

/* Tells the waiting parent the outcome (0 = mounted); -1 fd in the foreground. */
static void report_parent(int fd, unsigned char status)
{
	if (fd >= 0) {
		(void)!write(fd, &status, 1);
		close(fd);
	}
}

/* Detaches from the terminal once mounted: stdio to /dev/null, own session. */
static void detach_stdio(void)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		close(null);
	}
	setsid();
	if (chdir("/") != 0)
		log_msg(LOG_WARNING, "cannot chdir to /");
}

/* What the daemon runs beside the FUSE loop: the re-wrap walker and the control socket. */
struct daemon_services {
	struct volume_paths paths;
	struct rotation *rot;
	struct shred *shred;
	struct redata *redata;
	struct control *ctl;
};

/* Starts them once mounted; a re-wrap left unfinished by a crash or unmount resumes. */
static void services_start(struct daemon_services *svc, const struct mount_opts *o,
			   struct kekfs_fs *fs, struct volume *vol, struct keyring *kr)
{
	struct rotation_config rc;
	struct control_info ci;

	volume_paths_get(o->backing, o->keyring, &svc->paths);
	rc = (struct rotation_config){.backing_fd = kekfs_fs_backing_fd(fs),
				      .volume_path = svc->paths.volume,
				      .keyring_path = svc->paths.keyring,
				      .vol = vol,
				      .kr = kr,
				      .inodes = kekfs_fs_inodes(fs),
				      .audit_dir = svc->paths.audit_dir};
	/* Read-only: no re-wrap, no key changes, no audit records; status still answers. */
	svc->rot = o->read_only ? NULL : rotation_new(&rc);
	if (!o->read_only && !svc->rot)
		log_msg(LOG_ERR, "out of memory: rotation is not available on this mount");
	if (svc->rot && rotation_resume(svc->rot) != 0)
		log_msg(LOG_ERR, "cannot resume the unfinished re-wrap");
	if (svc->rot) {
		svc->shred = shred_new(&(struct shred_config){.backing_fd = rc.backing_fd,
							      .vol = vol,
							      .kr = kr,
							      .keyring_path = svc->paths.keyring,
							      .audit_dir = svc->paths.audit_dir,
							      .inodes = rc.inodes,
							      .invalidate = kekfs_fs_invalidate,
							      .invalidate_arg = fs,
							      .rot = svc->rot});
		if (!svc->shred || seal_resume(svc->shred) != 0)
			log_msg(LOG_ERR, "shred is not available on this mount, or a seal cannot "
					 "resume");
	}
	if (svc->rot &&
	    !(svc->redata = redata_new(&(struct redata_config){.backing_fd = rc.backing_fd,
							       .vol = vol,
							       .kr = kr,
							       .audit_dir = svc->paths.audit_dir,
							       .inodes = rc.inodes})))
		log_msg(LOG_ERR, "out of memory: re-encryption is not available on this mount");
	if (svc->rot && (keyring_expire(kr, svc->paths.keyring, (uint64_t)time(NULL)) != KR_OK ||
			 volume_record_generation(vol, kr, svc->paths.volume) != VOL_OK))
		log_msg(LOG_ERR, "cannot destroy the KEKs whose destruction date has come");
	ci = (struct control_info){.backing = o->backing,
				   .backing_fd = kekfs_fs_backing_fd(fs),
				   .keyring_path = svc->paths.keyring,
				   .audit_dir = svc->paths.audit_dir,
				   .volume_path = svc->paths.volume,
				   .mountpoint = o->mountpoint,
				   .vol = vol,
				   .kr = kr,
				   .rot = svc->rot,
				   .shred = svc->shred,
				   .redata = svc->redata};
	svc->ctl = control_start(&ci, geteuid());
	if (!svc->ctl)
		log_msg(LOG_ERR, "no control socket (%s): 'kekfs status|rotate %s' will not work",
			strerror(errno), o->mountpoint);
}

static void services_stop(struct daemon_services *svc)
{
	control_stop(svc->ctl);
	redata_free(svc->redata);
	shred_free(svc->shred);
	rotation_free(svc->rot);
}

/*
 * The volume's lock, taken before its keyring is read and held for the daemon's life: one
 * volume, one daemon. This process is already the daemon (the waiting parent never holds it).
 */
static int volume_lock(const struct mount_opts *o, int *fd)
{
	struct volume_lock_holder who;
	int rc =
	    volume_lock_take(o->backing, o->read_only ? VOLUME_LOCK_READ : VOLUME_LOCK_EXCLUSIVE,
			     o->mountpoint, "mount", fd, &who);

	return rc == 0 ? 0 : target_lock_error(o->backing, rc, &who, "unmount it first");
}

/*
 * The backing directory, with its .kekfs pinned for the life of the daemon: a .kekfs
 * renamed away and replaced while mounted gets none of the keyring, config or audit writes.
 * Where .kekfs cannot be pinned, the unlock that follows says what is wrong with it.
 */
static int backing_open_pinned(const char *backing)
{
	int fd = open(backing, O_PATH | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0) {
		cli_error("cannot open %s: %s", backing, strerror(errno));
		return -1;
	}
	(void)backing_meta_pin(fd);
	return fd;
}

/* The exit status when the key opens no slot: kekfs@.service does not restart on it
 * (RestartPreventExitStatus=), since the same key would fail again. */
#define MOUNT_EXIT_WRONG_KEY 3

static int mount_run(struct mount_opts *o, int status_fd)
{
	struct daemon_services svc = {0};
	struct volume vol = {0};
	struct keyring *kr = NULL;
	struct kekfs_fs *fs = NULL;
	struct session *se = NULL;
	struct kekfs_fs_config cfg;
	int rc = -1, backing_fd = -1, lock_fd = -1, unlocked = -1;

	if (mountpoint_check(o->mountpoint) != 0 || fuse_device_check() != 0 ||
	    (backing_fd = backing_open_pinned(o->backing)) < 0 || volume_lock(o, &lock_fd) != 0 ||
	    (unlocked = volume_unlock_all(o->backing, o->keyring, &o->src,
					  o->read_only ? NULL : "mount", &vol, &kr)) != 0)
		goto out;
	if (o->log_file && log_open(LOG_TO_FILE, o->log_file) != 0) {
		cli_error("cannot open log file %s: %s", o->log_file, strerror(errno));
		goto out;
	}
	if (o->read_only && redata_pending(backing_fd))
		fprintf(stderr, "kekfs: warning: a file re-encryption was interrupted by a crash; "
				"that file may read as EIO until the volume is mounted read-write "
				"once\n");
	else if (!o->read_only &&
		 volume_finish_interrupted(backing_fd, &vol, kr, o->backing) != 0)
		goto out;
	cfg = (struct kekfs_fs_config){
	    .backing_fd = backing_fd, .vol = &vol, .kr = kr, .mountpoint = o->mountpoint};
	fs = kekfs_fs_new(&cfg);
	if (!fs) {
		cli_error("out of memory");
		goto out;
	}
	rc = session_mount(&(struct session_opts){.backing = o->backing,
						  .kernel_opts = o->kernel_opts,
						  .allow_other = o->allow_other,
						  .default_permissions = o->default_permissions,
						  .read_only = o->read_only},
			   fs, o->mountpoint, &se);
	if (rc != SESSION_OK) {
		cli_error("%s", rc == SESSION_ERR_START
				    ? "cannot start a FUSE session (bad options?)"
				: rc == SESSION_ERR_MOUNT ? "cannot mount: see the message above"
							  : "cannot attach to the FUSE session");
		rc = -1;
		goto out;
	}
	if (o->ro_backing)
		fprintf(stderr, "kekfs: %s is on a read-only file system: mounted read-only\n",
			o->backing);
	if (!o->foreground) {
		if (!o->log_file)
			log_open(LOG_TO_SYSLOG, NULL);
		detach_stdio();
	}
	log_msg(LOG_INFO, "mounted %s on %s", o->backing, o->mountpoint);
	services_start(&svc, o, fs, &vol, kr);
	report_parent(status_fd, 0);
	status_fd = -1;
	notify_send("READY=1\nSTATUS=mounted");
	rc = session_serve(se);
	notify_send("STOPPING=1");
	log_msg(LOG_INFO, "unmounting %s", o->mountpoint);
	services_stop(&svc);
out:
	if (rc != 0)
		rc = unlocked == UNLOCK_WRONG_SECRET ? MOUNT_EXIT_WRONG_KEY : 1;
	report_parent(status_fd, (unsigned char)rc);
	session_end(se);
	if (fs)
		kekfs_fs_free(fs); /* closes backing_fd */
	else if (backing_fd >= 0)
		close(backing_fd);
	keyring_free(kr);
	volume_clear(&vol);
	if (lock_fd >= 0)
		close(lock_fd); /* last: until now this daemon may still write the volume */
	return rc;
}

/* The parent's side: wait for the child's word, and exit with it. */
static int wait_for_child(pid_t child, int status_fd)
{
	unsigned char status = 1;
	ssize_t n;
	int wstatus;

	do
		n = read(status_fd, &status, 1);
	while (n < 0 && errno == EINTR);
	close(status_fd);
	if (n == 1 && status == 0)
		return 0;
	waitpid(child, &wstatus, 0);
	if (n != 1)
		cli_error("the daemon exited before the mount was ready");
	return n == 1 ? status : 1;
}

int cmd_mount(int argc, char **argv)
{
	struct mount_opts o;
	int pipefd[2], ro;
	pid_t pid;

	if (remount_wanted(argc, argv, &ro))
		return remount_run(argv[argc - 1], ro);
	if (mount_parse(argc, argv, &o) != 0)
		return 1;
	if (o.foreground)
		return mount_run(&o, -1);
	if (pipe2(pipefd, O_CLOEXEC) != 0)
		return cli_fail("cannot create a pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		return cli_fail("cannot fork: %s", strerror(errno));
	if (pid > 0) {
		close(pipefd[1]);
		return wait_for_child(pid, pipefd[0]);
	}
	close(pipefd[0]);
	return mount_run(&o, pipefd[1]);
}

static const char umount_usage[] =
    "Usage: kekfs umount [--lazy] MOUNTPOINT\n"
    "\n"
    "Unmounts a kekfs mount (one whose daemon is gone, too); the daemon then wipes its keys\n"
    "and exits, and this returns once it has let go of the volume. Refuses anything that is\n"
    "not a kekfs mount.\n"
    "\n"
    "  -l, --lazy               detach it now although files in it are in use; the daemon\n"
    "                           exits once they are closed\n"
    "  -h, --help               show this help\n";

/* Runs fusermount3 -u [-z] on mp; 0, or its exit status with its last stderr line in err. */
static int fusermount_run(const char *mp, int lazy, char *err, size_t size)
{
	int pipefd[2], status = 1;
	ssize_t n, len = 0;
	char *last;
	pid_t pid;

	err[0] = '\0';
	if (pipe2(pipefd, O_CLOEXEC) != 0 || (pid = fork()) < 0)
		return snprintf(err, size, "%s", strerror(errno)), 1;
	if (pid == 0) {
		dup2(pipefd[1], STDERR_FILENO);
		execlp("fusermount3", "fusermount3", lazy ? "-uz" : "-u", "--", mp, (char *)NULL);
		fprintf(stderr, "cannot run fusermount3: %s (install fuse3)\n", strerror(errno));
		_exit(127);
	}
	close(pipefd[1]);
	while (len + 1 < (ssize_t)size && (n = read(pipefd[0], err + len, size - 1 - len)) != 0)
		len += n > 0 ? n : 0;
	close(pipefd[0]);
	err[len] = '\0';
	while (len > 0 && err[len - 1] == '\n')
		err[--len] = '\0';
	if ((last = strrchr(err, '\n')) != NULL)
		memmove(err, last + 1, strlen(last));
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* Waits (bounded) until the daemon of backing lets go of the volume, so that a command right
 * after this one finds it free. */
static void wait_released(const char *backing)
{
	const struct timespec tick = {0, 10 * 1000 * 1000};
	struct volume_lock_holder who;
	int fd;

	for (int i = 0; i < 1000; i++) {
		if (volume_lock_take(backing, VOLUME_LOCK_READ, NULL, NULL, &fd, &who) !=
		    -EWOULDBLOCK) {
			if (fd >= 0)
				close(fd);
			return;
		}
		nanosleep(&tick, NULL);
	}
}

/* Unmounts the kekfs mount m; a busy one names the processes that keep it. */
static int umount_kekfs(const struct kekfs_mount *m, int lazy)
{
	char err[512], holders[512];

	if (fusermount_run(m->mountpoint, lazy, err, sizeof(err)) == 0) {
		if (!lazy)
			wait_released(m->backing);
		return 0;
	}
	if (kekfs_mount_find(m->mountpoint, 0, NULL) &&
	    mount_holders(m->mountpoint, holders, sizeof(holders)) > 0)
		return cli_error("%s is busy: %s %s files in it: close them, or detach it now "
				 "with 'kekfs umount --lazy %s'",
				 m->mountpoint, holders, strchr(holders, ',') ? "hold" : "holds",
				 m->mountpoint),
		       1;
	return cli_error("cannot unmount %s: %s", m->mountpoint,
			 err[0] ? err : "fusermount3 failed"),
	       1;
}

int cmd_umount(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"lazy", no_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct kekfs_mount m;
	char mp[PATH_MAX];
	int c, lazy = 0;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":lh", longopts, NULL)) != -1) {
		if (c == 'h')
			fputs(umount_usage, stdout), exit(0);
		if (c != 'l')
			cli_bad_option(c, argv, "umount");
		lazy = 1;
	}
	if (optind != argc - 1)
		cli_usage("umount takes one mount point: see 'kekfs umount --help'");
	/* a dead mount does not resolve (ENOTCONN): its parent does */
	if (!realpath(argv[optind], mp) &&
	    (errno != ENOTCONN || target_absolute(argv[optind], mp, sizeof(mp)) != 0))
		return cli_fail("%s: %s", argv[optind], strerror(errno));
	if (!kekfs_mount_find(mp, 0, &m))
		return cli_error(path_is_mounted(mp)
				     ? "%s is not a kekfs mount: kekfs unmounts only "
				       "its own (use umount(8) for others)"
				     : "%s is not mounted",
				 mp),
		       1;
	return umount_kekfs(&m, lazy);
}
