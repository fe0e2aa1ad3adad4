/*
 * kekfs rotate | status | keys list: on a mount point they talk to the daemon through its
 * control socket (no secret needed: the daemon holds the keyring); on an unmounted backing
 * directory they unlock the keyring themselves.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../crypto/keywrap.h"
#include "../crypto/secmem.h"
#include "../fs/control.h"
#include "../keyring/audit.h"
#include "../volume/census.h"
#include "../volume/log.h"
#include "../volume/namekey.h"
#include "../volume/rotation.h"
#include "../volume/status.h"
#include "cli.h"
#include "cmd_keys.h"
#include "control_client.h"
#include "extopts.h"
#include "mounts.h"
#include "progress.h"
#include "target.h"
#include "unlock.h"

static const char rotate_usage[] =
    "Usage: kekfs rotate [OPTIONS] MOUNTPOINT|BACKING\n"
    "       kekfs rotate --data PATH...\n"
    "\n"
    "Creates KEK vN+1, makes it the active key (vN becomes decrypt-only) and re-wraps every\n"
    "file header and the name key under it. No file contents are re-encrypted. On a mount\n"
    "point the daemon does it in the background while files stay in use ('kekfs status'\n"
    "shows progress); on an unmounted backing directory it runs here, with a progress bar.\n"
    "\n"
    "  --force                  rotate again even though a re-wrap is unfinished\n"
    "  --wait                   (mounted) return once the re-wrap has finished, with a\n"
    "                           progress bar on a terminal; exit 1 if a header failed\n"
    "  --resume                 (offline) finish an unfinished re-wrap without a new KEK\n"
    "  --data PATH...           re-encrypt files' contents under new DEKs instead (see\n"
    "                           'kekfs rotate --data --help')\n"
    "  --key-file FILE, --passphrase-file FILE, --keyring PATH\n"
    "                           unlock an unmounted volume (not needed on a mount point)\n"
    "  -h, --help               show this help\n";

static const char status_usage[] =
    "Usage: kekfs status [--json]\n"
    "       kekfs status [OPTIONS] MOUNTPOINT|BACKING\n"
    "\n"
    "Without a volume: every kekfs mount on the machine, with its backing directory, active\n"
    "KEK version and age, re-wrap state and rotation policy (--json for scripts).\n"
    "\n"
    "Shows the volume's cipher, keyring generation, every KEK version with its state and\n"
    "age, the name key's KEK version, and the progress of a re-wrap.\n"
    "\n"
    "  --key-file FILE, --passphrase-file FILE, --keyring PATH\n"
    "                           unlock an unmounted volume (not needed on a mount point)\n"
    "  -h, --help               show this help\n";

static const char keys_usage[] =
    "Usage: kekfs keys list MOUNTPOINT|BACKING\n"
    "       kekfs keys retire N [--force] MOUNTPOINT|BACKING\n"
    "       kekfs keys restore N MOUNTPOINT|BACKING\n"
    "       kekfs keys destroy N [--after DURATION | --now] [--force] MOUNTPOINT|BACKING\n"
    "       kekfs keys cancel N MOUNTPOINT|BACKING\n"
    "       kekfs keys import --file F [--force] MOUNTPOINT|BACKING\n"
    "                                (BYOK: F's 32 bytes become the next KEK)\n"
    "       kekfs keys policy --rotate-every DURATION|never MOUNTPOINT|BACKING\n"
    "       kekfs keys slots BACKING\n"
    "       kekfs keys add-slot [--new-key-file F | --new-passphrase-file F |\n"
    "                            --rsa-public PUB.pem | --pkcs11 SPEC [--pin-file F] |\n"
    "                            --kms-command 'PROG ARGS' [--kms-env VAR]...] BACKING\n"
    "       kekfs keys create-token-key --pkcs11 SPEC [--pin-file F]\n"
    "       kekfs keys remove-slot N BACKING\n"
    "       kekfs keys passwd [--new-key-file F | --new-passphrase-file F | --pkcs11 SPEC |\n"
    "                          --kms-command 'PROG ARGS'] BACKING\n"
    "       kekfs keys backup FILE MOUNTPOINT|BACKING\n"
    "       kekfs keys restore FILE [--older] BACKING\n"
    "\n"
    "States of an old KEK version: decrypt-only (after a rotation), retired (refused,\n"
    "reversible with restore), pending destruction (refused; destroyed at the date unless\n"
    "cancelled; default --after 7d), destroyed (material erased, a tombstone stays).\n"
    "Retire and destroy are refused while any file or the name key still uses the version\n"
    "(they are listed); --force goes past that and makes those files unreadable.\n"
    "Unlock slots (like LUKS key slots) each wrap the keyring key under one secret; passwd\n"
    "re-wraps the slot you unlocked with. Slot commands work on an unmounted volume only.\n"
    "On an unmounted volume give --key-file, --passphrase-file and --keyring as for mount.\n"
    "A PKCS#11 SPEC is 'module=/path/to/module.so;token=LABEL;key=LABEL'. A volume whose\n"
    "slots are all token or KMS slots unlocks with them by itself (--pkcs11-unlock and\n"
    "--kms-unlock choose); the PIN comes from --pin-file F, --pin-credential NAME (default\n"
    "kekfs.pin), or the terminal. See README and docs/KMS-PLUGINS.md.\n"
    "A backup (a new FILE, 0600) holds the keyring and the volume config, sealed as on disk:\n"
    "it opens with the secrets the keyring had when it was made. Restore brings it back on\n"
    "an unmounted volume; one older than the volume's keyring needs --older, and the files\n"
    "it cannot open are counted first. 'keys restore N' (a number) restores KEK vN.\n";

/* "7d", "12h", "30m", "45s", "2w" in seconds; 0 if malformed. */
static uint64_t parse_duration(const char *s)
{
	static const uint64_t scale[] = {1, 60, 3600, 86400, 604800};
	const char *units = "smhdw", *u;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	u = *end ? strchr(units, *end) : units;
	if (!u || (*end && end[1]) || v == 0)
		return 0;
	return v * scale[u - units];
}

static int keys_parse(int argc, char **argv, const char *usage, struct keys_opts *o)
{
	static const struct option longopts[] = {
	    UNLOCK_OPTIONS,
	    {"rsa-public", required_argument, NULL, 'U'},
	    {"force", no_argument, NULL, 'F'},
	    {"resume", no_argument, NULL, 'R'},
	    {"wait", no_argument, NULL, 'W'},
	    {"after", required_argument, NULL, 'A'},
	    {"now", no_argument, NULL, 'N'},
	    {"new-key-file", required_argument, NULL, 'K'},
	    {"file", required_argument, NULL, 'I'},
	    {"rotate-every", required_argument, NULL, 'E'},
	    {"new-passphrase-file", required_argument, NULL, 'P'},
	    {"older", no_argument, NULL, 'O'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c, u;

	memset(o, 0, sizeof(*o));
	optind = 1;
	opterr = 0; /* getopt's own message would begin with a bare "rotate:" */
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if ((u = unlock_option(c, optarg, &o->src, &o->new_src, &o->keyring)) != 0) {
			if (u < 0)
				cli_usage("see 'kekfs %s --help'", argv[0]);
		} else if (c == 'U')
			o->new_src.rsa_key = optarg, o->new_src.rsa_public = 1;
		else if (c == 'F')
			o->force = 1;
		else if (c == 'R')
			o->resume = 1;
		else if (c == 'W')
			o->wait = 1;
		else if (c == 'A')
			o->after = optarg;
		else if (c == 'N')
			o->now = 1;
		else if (c == 'K')
			o->new_src.key_file = optarg;
		else if (c == 'I')
			o->import_file = optarg;
		else if (c == 'E')
			o->rotate_every = optarg;
		else if (c == 'P')
			o->new_src.passphrase_file = optarg;
		else if (c == 'O')
			o->older = 1;
		else if (c == 'h')
			fputs(usage, stdout), exit(0);
		else
			cli_bad_option(c, argv, argv[0]);
	}
	if (optind != argc - 1)
		cli_usage("%s takes one mount point or backing directory: see 'kekfs %s --help'",
			  argv[0], argv[0]);
	if (target_real(argv[optind], o->target) != 0)
		return -1;
	return target_volume(argv[optind], o->target);
}

/* Prints the lines of a status text (only those starting with only_prefix, if set); frees it. */
static void print_lines(char *body, const char *only_prefix)
{
	for (char *line = strtok(body, "\n"); line; line = strtok(NULL, "\n"))
		if (!only_prefix || strncmp(line, only_prefix, strlen(only_prefix)) == 0)
			puts(line);
	free(body);
}

/* Sends one command to the daemon and prints its answer; the process exit status. */
static int online(const struct kekfs_mount *m, const char *command, const char *only_prefix)
{
	char err[512], *body = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&body, &len);
	int rc;

	if (!out)
		return cli_fail("out of memory");
	rc = control_request(m->mountpoint, m->uid, command, out, err, sizeof(err));
	fclose(out);
	if (rc != 0) {
		free(body);
		return cli_fail("%s", err);
	}
	print_lines(body, only_prefix);
	return 0;
}

/* Draws the offline re-wrap's progress on a terminal, once per tenth of a second. */
static void progress_wait(struct rotation *rot)
{
	struct rotation_status st;
	const struct timespec tick = {0, 100 * 1000 * 1000};
	struct progress bar;
	char what[64];

	progress_init(&bar);
	for (rotation_get_status(rot, &st); st.running; rotation_get_status(rot, &st)) {
		snprintf(what, sizeof(what), "re-wrapping to KEK v%u", st.target);
		progress_show(&bar, what, st.done, st.total);
		nanosleep(&tick, NULL);
	}
	if (bar.shown)
		putchar('\n');
}

/* Offline rotation (or --resume, or BYOK material): unlock, rotate, re-wrap here, report. */
static int rotate_offline(const struct keys_opts *o, const uint8_t *material)
{
	struct volume vol = {0};
	struct keyring *kr = NULL;
	struct volume_paths paths;
	struct rotation *rot = NULL;
	struct rotation_status st;
	uint32_t version = 0;
	int fd = -1, rc = 1, err;

	log_set_level(LOG_ERR);
	if (target_lock(o->target, VOLUME_LOCK_EXCLUSIVE, "rotate", TARGET_LOCK_HINT) != 0 ||
	    volume_unlock_all(o->target, o->keyring, &o->src, "rotate", &vol, &kr) != 0)
		goto out;
	volume_paths_get(o->target, o->keyring, &paths);
	fd = open(o->target, O_PATH | O_DIRECTORY | O_CLOEXEC);
	rot = fd < 0 ? NULL
		     : rotation_new(&(struct rotation_config){.backing_fd = fd,
							      .volume_path = paths.volume,
							      .keyring_path = paths.keyring,
							      .vol = &vol,
							      .kr = kr,
							      .audit_dir = paths.audit_dir});
	if (!rot) {
		cli_error("cannot open %s: %s", o->target, strerror(errno));
		goto out;
	}
	if (volume_finish_interrupted(fd, &vol, kr, o->target) != 0)
		goto out;
	if (material && (version = keyring_find_key(kr, material)) != 0) {
		cli_error("that key material is already KEK v%u of %s: import a new key", version,
			  o->target);
		goto out;
	}
	if (!o->resume && rotation_pending(fd) && !o->force) {
		cli_error("a re-wrap of %s is unfinished: finish it with 'kekfs rotate --resume', "
			  "or rotate again with --force",
			  o->target);
		goto out;
	}
	err = o->resume ? rotation_resume(rot) : rotation_start(rot, 1, NULL, material, &version);
	if (err != 0) {
		cli_error("rotation failed: %s; nothing changed", strerror(-err));
		goto out;
	}
	progress_wait(rot);
	rotation_wait(rot);
	rotation_get_status(rot, &st);
	printf("KEK v%u is active: %llu files, %llu re-wrapped, %llu failed, name key %s, "
	       "%.1f s\n",
	       keyring_active_version(kr), (unsigned long long)st.done,
	       (unsigned long long)st.rewrapped, (unsigned long long)st.failed,
	       st.name_key_done ? "re-wrapped" : "NOT re-wrapped", st.elapsed);
	if (st.failed || !st.name_key_done)
		cli_error("some headers could not be re-wrapped (listed above); they still open "
			  "with the old KEK, which stays until they are fixed");
	else
		rc = 0;
out:
	rotation_free(rot);
	if (fd >= 0)
		close(fd);
	keyring_free(kr);
	volume_clear(&vol);
	return rc;
}

/*
 * rotate --wait on a mount: follows the daemon's re-wrap ("rewrap progress", numbers) until it
 * finishes, drawing a bar on a terminal; the exit status says whether every header and the
 * name key moved to the new KEK.
 */
static int rewrap_follow(const struct kekfs_mount *m)
{
	const struct timespec tick = {0, 100 * 1000 * 1000};
	unsigned state = REWRAP_RUNNING, target = 0, name_key = 0;
	unsigned long long done = 0, total = 0, rewrapped = 0, failed = 0, ms = 0;
	struct progress bar;
	char what[64], *body = NULL;

	progress_init(&bar);
	while (state == REWRAP_RUNNING) {
		if (target_ask(m, "rewrap progress", &body) != 0)
			return 1;
		if (sscanf(body, REWRAP_PROGRESS_FMT, &state, &target, &done, &total, &rewrapped,
			   &failed, &name_key, &ms) != 8)
			state = REWRAP_NONE;
		free(body);
		body = NULL;
		snprintf(what, sizeof(what), "re-wrapping to KEK v%u", target);
		if (state == REWRAP_RUNNING) {
			progress_show(&bar, what, done, total);
			nanosleep(&tick, NULL);
		}
	}
	progress_clear(&bar);
	if (state != REWRAP_FINISHED)
		return cli_fail("%s: the daemon reports no re-wrap", m->mountpoint);
	printf("re-wrap to KEK v%u finished: %llu files, %llu re-wrapped, %llu failed, name key "
	       "%s, %.1f s\n",
	       target, done, rewrapped, failed, name_key ? "re-wrapped" : "NOT re-wrapped",
	       (double)ms / 1000);
	if (failed || !name_key)
		return cli_fail("some headers could not be re-wrapped (see the daemon's log); they "
				"still open with the old KEK, which stays until they are fixed");
	return 0;
}

int cmd_rotate(int argc, char **argv)
{
	struct keys_opts o;
	struct kekfs_mount m;

	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--data") == 0)
			return cmd_rotate_data(argc, argv);
	if (keys_parse(argc, argv, rotate_usage, &o) != 0)
		return 1;
	if (kekfs_mount_find(o.target, 0, &m)) {
		if (o.resume)
			return cli_fail("a mounted volume resumes its re-wrap by itself");
		if (online(&m, o.force ? "rotate force" : "rotate", NULL) != 0)
			return 1;
		return o.wait ? rewrap_follow(&m) : 0;
	}
	if (kekfs_mount_find(o.target, 1, &m))
		return cli_error("%s is mounted on %s: rotate it there ('kekfs rotate %s')",
				 o.target, m.mountpoint, m.mountpoint),
		       1;
	return rotate_offline(&o, NULL);
}

/* Reads exactly 32 bytes of customer key material into secure memory; NULL after a message. */
static uint8_t *material_read(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	unsigned char *key = NULL;
	ssize_t n = fd < 0 ? -errno : secmem_read_key(fd, &key);

	_Static_assert(KEYWRAP_KEY_LEN == SECMEM_KEY_LEN, "key material is a secmem key");
	if (fd >= 0)
		close(fd);
	if (key)
		return key;
	if (n < 0)
		cli_error("invalid key material: cannot read %s: %s", path, strerror((int)-n));
	else
		cli_error("invalid key material: expected 32 bytes, got %s%zd (make it with "
			  "'openssl rand -out FILE 32')",
			  n > KEYWRAP_KEY_LEN ? "more than " : "", n > KEYWRAP_KEY_LEN ? 32 : n);
	return NULL;
}

/* keys policy --rotate-every D|never: the daemon rotates by itself once the KEK is that old. */
static int policy_command(int argc, char **argv)
{
	struct keys_opts o;
	struct kekfs_mount m;
	struct volume vol = {0};
	struct keyring *kr = NULL;
	struct volume_paths paths;
	uint64_t seconds;
	char cmd[64];
	int rc;

	if (keys_parse(argc - 1, argv + 1, keys_usage, &o) != 0)
		return 1;
	if (!o.rotate_every)
		return cli_error("keys policy needs --rotate-every DURATION (e.g. 90d) or never"),
		       1;
	seconds = strcmp(o.rotate_every, "never") == 0 ? 0 : parse_duration(o.rotate_every);
	if (!seconds && strcmp(o.rotate_every, "never") != 0)
		return cli_error(
			   "--rotate-every takes a duration such as 90d, 12h or 30m, or never"),
		       1;
	snprintf(cmd, sizeof(cmd), "policy %llu", (unsigned long long)seconds);
	if (kekfs_mount_find(o.target, 0, &m) || kekfs_mount_find(o.target, 1, &m))
		return online(&m, cmd, NULL);
	if (target_lock(o.target, VOLUME_LOCK_EXCLUSIVE, "keys policy", TARGET_LOCK_HINT) != 0 ||
	    volume_unlock_all(o.target, o.keyring, &o.src, "keys", &vol, &kr) != 0)
		return 1;
	volume_paths_get(o.target, o.keyring, &paths);
	rc = keyring_set_rotation_period(kr, paths.keyring, seconds);
	if (rc == KR_OK) {
		volume_record_generation(&vol, kr, paths.volume);
		puts("rotation policy saved");
	} else {
		cli_error("cannot save the keyring: %s", keyring_strerror(rc));
	}
	keyring_free(kr);
	volume_clear(&vol);
	return rc == KR_OK ? 0 : 1;
}

/*
 * BYOK on a mounted volume: the key file's fd goes to the daemon, which reads the bytes into
 * its own secure memory; they never pass through this process's buffers again.
 */
static int import_online(const struct kekfs_mount *m, const char *file, int force)
{
	char err[512], *body = NULL;
	size_t len = 0;
	FILE *out;
	int fd = open(file, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return cli_error("invalid key material: cannot read %s: %s", file, strerror(errno)),
		       1;
	out = open_memstream(&body, &len);
	rc = out ? control_request_fd(m->mountpoint, m->uid, force ? "import force" : "import", fd,
				      out, err, sizeof(err))
		 : -1;
	close(fd);
	if (out)
		fclose(out);
	if (rc != 0)
		cli_error("%s", out ? err : "out of memory");
	else
		print_lines(body, NULL), body = NULL;
	free(body);
	return rc == 0 ? 0 : 1;
}

/* keys import --file F MOUNTPOINT|BACKING: the customer's 32 bytes become the next KEK. */
static int import_command(int argc, char **argv)
{
	struct keys_opts o;
	struct kekfs_mount m;
	uint8_t *material;
	int rc;

	if (keys_parse(argc - 1, argv + 1, keys_usage, &o) != 0)
		return 1;
	if (!o.import_file)
		return cli_fail("keys import needs --file F (32 bytes of key material)");
	material = material_read(o.import_file); /* checked here: one clear line if bad */
	if (!material)
		return 1;
	if (kekfs_mount_find(o.target, 0, &m) || kekfs_mount_find(o.target, 1, &m)) {
		secmem_free(material);
		return import_online(&m, o.import_file, o.force);
	}
	rc = rotate_offline(&o, material);
	secmem_free(material);
	return rc;
}

/* status and keys list: the daemon's view when mounted, else the keyring's. */
static int show(const struct keys_opts *o, const char *only_prefix)
{
	struct volume vol = {0};
	struct keyring *kr = NULL;
	struct kekfs_mount m;
	char *body = NULL;
	size_t len = 0;
	FILE *out;
	int fd;

	if (kekfs_mount_find(o->target, 0, &m) || kekfs_mount_find(o->target, 1, &m))
		return online(&m, "status", only_prefix);
	if (volume_unlock_all(o->target, o->keyring, &o->src, "status", &vol, &kr) != 0)
		return 1;
	out = open_memstream(&body, &len);
	if (out) {
		volume_status_print(
		    out, &(struct volume_status){.backing = o->target, .vol = &vol, .kr = kr});
		fd = open(o->target, O_PATH | O_DIRECTORY | O_CLOEXEC);
		fprintf(out, "re-wrap: %s\n",
			fd >= 0 && rotation_pending(fd)
			    ? "UNFINISHED (mount, or 'kekfs rotate --resume')"
			    : "none pending");
		if (fd >= 0)
			close(fd);
		fclose(out);
		print_lines(body, only_prefix);
	}
	keyring_free(kr);
	volume_clear(&vol);
	return out ? 0 : 1;
}

/* Prints s as a JSON string. */
static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

/* One mount's line of `kekfs status`: its daemon's status, boiled down. */
struct mount_summary {
	char kek[64];	  /* "v3, created 2026-11-22 13:04 UTC" */
	char rewrap[256]; /* the re-wrap line */
	char policy[256]; /* the rotation policy line */
	int reachable;
};

static void summarise(const struct kekfs_mount *m, struct mount_summary *sum)
{
	char err[256], *body = NULL, *save = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&body, &len);

	memset(sum, 0, sizeof(*sum));
	snprintf(sum->rewrap, sizeof(sum->rewrap), "unknown");
	if (!out)
		return;
	sum->reachable =
	    control_request(m->mountpoint, m->uid, "status", out, err, sizeof(err)) == 0;
	fclose(out);
	for (char *line = strtok_r(body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned v;
		char when[40];

		if (sscanf(line, "KEK v%u: active, created %39[^\n]", &v, when) == 2)
			snprintf(sum->kek, sizeof(sum->kek), "v%u, created %s", v, when);
		else if (strncmp(line, "re-wrap: ", 9) == 0)
			snprintf(sum->rewrap, sizeof(sum->rewrap), "%s", line + 9);
		else if (strncmp(line, "rotation policy: ", 17) == 0)
			snprintf(sum->policy, sizeof(sum->policy), "%s", line + 17);
	}
	free(body);
}

/* kekfs status [--json]: every kekfs mount on the machine. */
static int status_all(int json)
{
	struct kekfs_mount mounts[256];
	int n = kekfs_mounts_all(mounts, 256);

	if (json)
		putchar('[');
	for (int i = 0; i < n; i++) {
		struct mount_summary s;

		summarise(&mounts[i], &s);
		if (!json) {
			printf("%s\n  backing: %s\n  active KEK: %s\n  re-wrap: %s\n  rotation "
			       "policy: %s\n",
			       mounts[i].mountpoint, mounts[i].backing,
			       s.reachable ? s.kek : "(daemon not reachable)", s.rewrap, s.policy);
			continue;
		}
		printf("%s{\"mountpoint\":", i ? "," : "");
		json_string(mounts[i].mountpoint);
		printf(",\"backing\":");
		json_string(mounts[i].backing);
		printf(",\"reachable\":%s,\"active_kek\":", s.reachable ? "true" : "false");
		json_string(s.kek);
		printf(",\"rewrap\":");
		json_string(s.rewrap);
		printf(",\"rotation_policy\":");
		json_string(s.policy);
		putchar('}');
	}
	if (json)
		puts("]");
	else if (n == 0)
		puts("no kekfs volume is mounted");
	return 0;
}

int cmd_status(int argc, char **argv)
{
	struct keys_opts o;

	if (argc == 1 || (argc == 2 && strcmp(argv[1], "--json") == 0))
		return status_all(argc == 2);
	if (keys_parse(argc, argv, status_usage, &o) != 0)
		return 1;
	return show(&o, NULL);
}

static const char audit_usage[] =
    "Usage: kekfs audit verify MOUNTPOINT|BACKING\n"
    "\n"
    "Checks the chain of MACs over the audit log (.kekfs/audit.log): an edited, deleted,\n"
    "inserted or reordered record is found and named. Lines cut from the end are not.\n"
    "On an unmounted volume give --key-file, --passphrase-file and --keyring as for mount.\n";

int cmd_audit(int argc, char **argv)
{
	struct keys_opts o;
	struct kekfs_mount m;
	struct volume vol = {0};
	struct keyring *kr = NULL;
	struct volume_paths paths;
	unsigned long lines = 0;
	char msg[512];
	int rc;

	if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))
		return fputs(audit_usage, stdout), 0;
	if (argc < 2 || strcmp(argv[1], "verify") != 0)
		return cli_error("usage: kekfs audit verify MOUNTPOINT|BACKING"), 2;
	if (keys_parse(argc - 1, argv + 1, audit_usage, &o) != 0)
		return 1;
	if (kekfs_mount_find(o.target, 0, &m) || kekfs_mount_find(o.target, 1, &m))
		return online(&m, "audit verify", NULL);
	if (volume_unlock_all(o.target, o.keyring, &o.src, "audit", &vol, &kr) != 0)
		return 1;
	volume_paths_get(o.target, o.keyring, &paths);
	rc = audit_verify(paths.audit_dir, kr, &lines, msg, sizeof(msg));
	if (rc == 0)
		printf("audit log: %s\n", msg);
	else
		cli_error("audit log: %s", msg);
	keyring_free(kr);
	volume_clear(&vol);
	return rc == 0 ? 0 : 1;
}

/* Applies one key-state change, through the daemon or on the unmounted volume. */
static int keys_change(struct keys_opts *o, enum kek_change change, uint32_t version)
{
	struct volume vol = {0};
	struct keyring *kr = NULL;
	struct kekfs_mount m;
	struct volume_paths paths;
	uint64_t delay = o->after ? parse_duration(o->after) : 7 * 86400;
	char cmd[128], msg[8192] = "";
	int fd, rc;

	if (change == KEK_DESTROY_LATER && o->now)
		change = KEK_DESTROY_NOW;
	if (change == KEK_DESTROY_LATER && !delay)
		return cli_fail("--after takes a duration such as 7d, 12h or 30m");
	snprintf(cmd, sizeof(cmd), "keys %d %u %d %llu", (int)change, version, o->force,
		 (unsigned long long)time(NULL) + (unsigned long long)delay);
	if (kekfs_mount_find(o->target, 0, &m) || kekfs_mount_find(o->target, 1, &m))
		return online(&m, cmd, NULL);
	if (target_lock(o->target, VOLUME_LOCK_EXCLUSIVE, "keys", TARGET_LOCK_HINT) != 0 ||
	    volume_unlock_all(o->target, o->keyring, &o->src, "keys", &vol, &kr) != 0)
		return 1;
	volume_paths_get(o->target, o->keyring, &paths);
	fd = open(o->target, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 && volume_finish_interrupted(fd, &vol, kr, o->target) != 0)
		snprintf(msg, sizeof(msg), "nothing changed");
	rc = fd < 0 || msg[0]
		 ? -1
		 : census_change_kek(fd, &vol, kr, paths.keyring, paths.audit_dir,
				     &(struct audit_actor){getuid(), getpid()}, version, change,
				     (uint64_t)time(NULL) + delay, o->force, msg, sizeof(msg));
	if (fd >= 0)
		close(fd);
	if (rc == 0 && volume_record_generation(&vol, kr, paths.volume) != VOL_OK)
		cli_error("warning: cannot record the keyring generation in %s", paths.volume);
	if (rc == 0)
		puts(msg);
	else
		cli_error("%s", fd < 0 ? strerror(errno) : msg);
	keyring_free(kr);
	volume_clear(&vol);
	return rc == 0 ? 0 : 1;
}

/* Records a slot change (its kind, never a secret) in the audit log. */
static void slot_audit(const char *dir, const struct keyring *kr, const char *verb, int type,
		       int rc)
{
	struct audit_event ev = {
	    .op = verb, .detail = keyring_kind_name(type), .result = rc == KR_OK ? "ok" : "failed"};

	audit_event_self(&ev);
	ev.kek = keyring_active_version(kr);
	if (audit_append(dir, kr, &ev) != 0)
		fprintf(stderr, "kekfs: warning: cannot append to the audit log in %s\n", dir);
}

/* "slot N: KIND: SPEC": for a KMS slot its command line, then the names of the environment
 * variables it passes on (the spec's other lines; never their values). */
static void slot_print(const struct keyring *kr, size_t i)
{
	const char *spec = keyring_slot_spec(kr, i);
	int names = 0;

	printf("slot %zu: %s%s%.*s", i + 1, keyring_kind_name(keyring_slot_type(kr, i)),
	       spec[0] ? ": " : "", (int)strcspn(spec, "\n"), spec);
	for (const char *p = strchr(spec, '\n'); p && p[1]; p = strchr(p + 1, '\n'))
		printf("%s%.*s", names++ ? ", " : " (environment: ", (int)strcspn(p + 1, "\n"),
		       p + 1);
	puts(names ? ")" : "");
}
/* Slot changes rewrite the keyring, which a mounted volume's daemon holds: offline only. */
static int slots_change(struct keys_opts *o, const char *verb, unsigned long index)
{
	struct volume vol = {0};
	struct keyring *kr = NULL;
	struct volume_paths paths;
	struct kekfs_mount m;
	struct kr_secret secret = {0};
	char ext_msg[sizeof(((struct kr_external *)0)->msg)];
	int rc = KR_OK, type;

	if (kekfs_mount_find(o->target, 0, &m) || kekfs_mount_find(o->target, 1, &m))
		return cli_error("%s is mounted on %s: unmount it first, the daemon holds the keyring",
				 m.backing, m.mountpoint),
		       1;
	if (target_lock(o->target, VOLUME_LOCK_EXCLUSIVE, "keys", "unmount it first") != 0 ||
	    volume_unlock_all(o->target, o->keyring, &o->src, "keys", &vol, &kr) != 0)
		return 1;
	volume_paths_get(o->target, o->keyring, &paths);
	if (strcmp(verb, "slots") == 0) {
		for (size_t i = 0; i < keyring_slot_count(kr); i++)
			slot_print(kr, i);
	} else if (strcmp(verb, "remove-slot") == 0) {
		type = index <= keyring_slot_count(kr) ? keyring_slot_type(kr, index - 1) : 0;
		rc = keyring_slot_remove(kr, paths.keyring, index - 1);
		slot_audit(paths.audit_dir, kr, verb, type, rc);
	} else if (secret_read(&o->new_src, 1, &secret) != 0) {
		rc = 1;
	} else {
		rc = strcmp(verb, "passwd") == 0 ? keyring_passwd(kr, paths.keyring, &secret)
						 : keyring_slot_add(kr, paths.keyring, &secret);
		if (rc == KR_ERR_EXTERNAL)
			snprintf(ext_msg, sizeof(ext_msg), "%s", secret.ext->msg);
		slot_audit(paths.audit_dir, kr, verb, secret.type, rc);
		secret_free(&secret);
	}
	if (rc == KR_ERR_EXTERNAL)
		cli_error("%s: %s; nothing changed", verb, ext_msg);
	else if (rc != KR_OK && rc != 1)
		cli_error("%s: %s; nothing changed", verb, keyring_strerror(rc));
	else if (rc == KR_OK && strcmp(verb, "slots") != 0)
		printf("%s: done; the keyring now has %zu unlock slot%s\n", verb,
		       keyring_slot_count(kr), keyring_slot_count(kr) == 1 ? "" : "s");
	if (rc == KR_OK)
		volume_record_generation(&vol, kr, paths.volume);
	keyring_free(kr);
	volume_clear(&vol);
	return rc == KR_OK ? 0 : 1;
}

/* keys backup FILE TARGET, keys restore FILE TARGET (a FILE that is not a KEK number) */
static int backup_restore_command(int argc, char **argv)
{
	struct keys_opts o;

	if (argc < 4) /* keys backup|restore FILE [OPTIONS] TARGET */
		cli_usage("keys %s needs a FILE and a volume: kekfs keys %s FILE "
			  "MOUNTPOINT|BACKING (see 'kekfs keys --help')",
			  argv[1], argv[1]);
	if (keys_parse(argc - 2, argv + 2, keys_usage, &o) != 0)
		return 1;
	return strcmp(argv[1], "backup") == 0 ? keys_backup(argv[2], &o)
					      : keys_restore(argv[2], &o);
}

/* keys slots|add-slot|remove-slot N|passwd */
static int slots_command(int argc, char **argv)
{
	struct keys_opts o;
	unsigned long index = 0;
	int skip = 1;
	char *end;

	if (strcmp(argv[1], "remove-slot") == 0) {
		index = argc > 2 ? strtoul(argv[2], &end, 10) : 0;
		if (argc < 3 || *end || index == 0)
			cli_usage("keys remove-slot needs a slot number (see 'kekfs keys slots')");
		skip = 2;
	}
	if (keys_parse(argc - skip, argv + skip, keys_usage, &o) != 0)
		return 1;
	return slots_change(&o, argv[1], index);
}

int cmd_keys(int argc, char **argv)
{
	static const struct {
		const char *verb;
		enum kek_change change;
	} verbs[] = {{"retire", KEK_RETIRE},
		     {"restore", KEK_RESTORE},
		     {"cancel", KEK_RESTORE},
		     {"destroy", KEK_DESTROY_LATER}};
	struct keys_opts o;
	unsigned long version;
	char *end;

	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		fputs(keys_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "list") == 0)
		return keys_parse(argc - 1, argv + 1, keys_usage, &o) ? 1 : show(&o, "KEK ");
	if (strcmp(argv[1], "import") == 0)
		return import_command(argc, argv);
	if (strcmp(argv[1], "policy") == 0)
		return policy_command(argc, argv);
	if (strcmp(argv[1], "create-token-key") == 0)
		return cmd_token_key(argc - 1, argv + 1);
	if (strcmp(argv[1], "backup") == 0 || (strcmp(argv[1], "restore") == 0 && argc > 2 &&
					       strspn(argv[2], "0123456789") != strlen(argv[2])))
		return backup_restore_command(argc, argv);
	if (strcmp(argv[1], "slots") == 0 || strcmp(argv[1], "add-slot") == 0 ||
	    strcmp(argv[1], "remove-slot") == 0 || strcmp(argv[1], "passwd") == 0)
		return slots_command(argc, argv);
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strcmp(argv[1], verbs[i].verb) != 0)
			continue;
		version = argc > 2 ? strtoul(argv[2], &end, 10) : 0;
		if (argc < 3 || *end || version == 0 || version > UINT32_MAX)
			cli_usage("keys %s needs a KEK version number (see 'kekfs keys list')",
				  verbs[i].verb);
		if (keys_parse(argc - 2, argv + 2, keys_usage, &o) != 0)
			return 1;
		return keys_change(&o, verbs[i].change, (uint32_t)version);
	}
	cli_error("unknown keys command '%s': see 'kekfs keys --help'", argv[1]);
	return 2;
}
