/*
 * kekfs rotate --data: re-encrypts files' contents under fresh DEKs (volume/redata.c does the
 * work). Paths under a mount point go to the daemon through its control socket; an unmounted
 * backing directory is unlocked here.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../volume/log.h"
#include "../volume/redata.h"
#include "cli.h"
#include "extopts.h"
#include "target.h"
#include "unlock.h"

struct redata_opts {
	struct secret_source src;
	const char *keyring;
	int recursive;
	char **operands;
	int noperands;
};

static const char redata_usage[] =
    "Usage: kekfs rotate --data [-r] PATH...\n"
    "       kekfs rotate --data [--key-file F|--passphrase-file F] [--keyring P] BACKING "
    "PATH...\n"
    "\n"
    "Re-encrypts each file's contents under a new data key (DEK) and file id, for data whose\n"
    "key may have been exposed (a KEK rotation only re-wraps the old DEK). The new ciphertext\n"
    "is written whole beside the volume's metadata first and then copied over the file, so a\n"
    "crash at any point leaves the old or the new file, finished at the next mount. The file\n"
    "keeps its inode, hard links, xattrs and times; its readers and writers wait meanwhile.\n"
    "PATHs are regular files under a kekfs mount point, or, for an unmounted BACKING\n"
    "directory, paths inside the volume.\n"
    "\n"
    "  -r, --recursive          re-encrypt every regular file of each directory tree under a\n"
    "                           mount point (symbolic links are not followed)\n" UNLOCK_USAGE
    "  -h, --help               show this help\n";

static int redata_parse(int argc, char **argv, struct redata_opts *o)
{
	static const struct option longopts[] = {
	    {"data", no_argument, NULL, 'D'},
	    {"recursive", no_argument, NULL, 'r'},
	    UNLOCK_OPTIONS,
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c, u;

	memset(o, 0, sizeof(*o));
	optind = 1;
	opterr = 0; /* getopt's own message would begin with a bare "rotate:" */
	while ((c = getopt_long(argc, argv, ":rh", longopts, NULL)) != -1) {
		if ((u = unlock_option(c, optarg, &o->src, NULL, &o->keyring)) < 0)
			cli_usage("see 'kekfs rotate --data --help'");
		if (u == 0 && c != 'h' && c != 'D' && c != 'r')
			cli_bad_option(c, argv, "rotate --data");
		if (c == 'h')
			fputs(redata_usage, stdout), exit(0);
		o->recursive |= c == 'r';
	}
	o->operands = argv + optind;
	o->noperands = argc - optind;
	if (o->noperands < 1)
		cli_usage(
		    "rotate --data needs at least one file: see 'kekfs rotate --data --help'");
	return 0;
}

/* Writes what the kernel still caches of the file out first, so all of it gets the new DEK. */
static void flush_page_cache(const char *abs)
{
	struct stat st;
	int fd = lstat(abs, &st) == 0 && S_ISREG(st.st_mode)
		     ? open(abs, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
		     : -1;

	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* The read-write kekfs mount path is under (abs: path made absolute), or -1 after one line. */
static int online_mount(const char *path, char abs[PATH_MAX], struct kekfs_mount *m)
{
	int rc = target_absolute(path, abs, PATH_MAX);

	if (rc != 0)
		return cli_error("%s: %s", path, strerror(-rc));
	if (!target_mount_of(abs, m))
		return cli_error("%s: not inside a mounted kekfs volume (for an unmounted one: "
				 "kekfs rotate --data --key-file F BACKING PATH)",
				 path);
	if (target_mount_read_only(m->mountpoint))
		return cli_error("%s is mounted read-only: re-encryption needs a read-write mount",
				 m->mountpoint);
	return 0;
}

/* Re-encrypts one file under a mount point through its daemon; quiet: no line when done. */
static int redata_online(const char *path, int quiet)
{
	struct kekfs_mount m;
	char abs[PATH_MAX], cmd[PATH_MAX + 16], *body = NULL;
	const char *rel;

	if (online_mount(path, abs, &m) != 0)
		return -1;
	rel = target_rel(path, abs, &m, "re-encrypt");
	if (!rel)
		return -1;
	flush_page_cache(abs);
	snprintf(cmd, sizeof(cmd), "redata %s", rel);
	if (target_ask(&m, cmd, &body) != 0)
		return -1;
	if (!quiet)
		fputs(body, stdout);
	free(body);
	return 0;
}

/* What a tree walk has done so far (nftw gives its callback no argument of its own). */
static struct {
	unsigned long files, failed;
} tree;

/* nftw's visit: a regular file is re-encrypted; a directory it cannot read is a failure, the
 * walk goes on (one bad directory must not leave the rest of the tree under the old keys). */
static int tree_visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	if (type == FTW_F && S_ISREG(st->st_mode)) {
		if (redata_online(path, 1) != 0)
			tree.failed++;
		else
			tree.files++;
	} else if (type == FTW_DNR || type == FTW_NS) {
		cli_error("%s: cannot be read: %s", path, strerror(errno));
		tree.failed++;
	}
	return 0;
}

/* Re-encrypts every regular file of the tree at dir, one request each; then one line. */
static int redata_tree(const char *dir)
{
	tree.files = tree.failed = 0;
	if (nftw(dir, tree_visit, 16, FTW_PHYS | FTW_MOUNT) != 0)
		return cli_error("%s: %s", dir, strerror(errno));
	printf("%s: %lu file%s re-encrypted under new data keys%s", dir, tree.files,
	       tree.files == 1 ? "" : "s", tree.failed ? "" : "\n");
	if (tree.failed)
		printf(", %lu failed (see above)\n", tree.failed);
	return tree.failed ? -1 : 0;
}

/* One operand under a mount point: a file, or with -r a directory tree. */
static int redata_operand(const struct redata_opts *o, const char *path)
{
	struct kekfs_mount m;
	char abs[PATH_MAX];
	struct stat st;

	if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		if (online_mount(path, abs, &m) != 0)
			return -1;
		if (!o->recursive)
			return cli_error("%s: is a directory (use -r to re-encrypt a tree)", path);
		return redata_tree(path);
	}
	return redata_online(path, 0);
}

/* Unlocks the unmounted volume at backing and re-encrypts the files named after it. */
static int redata_offline(const struct redata_opts *o, const char *backing)
{
	struct audit_actor self = {getuid(), getpid()};
	struct volume vol = {0};
	struct keyring *kr = NULL;
	struct volume_paths paths;
	struct redata *rd = NULL;
	char err[PATH_MAX + 128];
	int fd = -1, failed = 1;

	log_set_level(LOG_ERR);
	if (target_lock(backing, VOLUME_LOCK_EXCLUSIVE, "rotate --data", TARGET_LOCK_HINT) != 0 ||
	    volume_unlock_all(backing, o->keyring, &o->src, "rotate-data", &vol, &kr) != 0)
		goto out;
	volume_paths_get(backing, o->keyring, &paths);
	fd = open(backing, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || volume_finish_interrupted(fd, &vol, kr, backing) != 0)
		goto out;
	rd = redata_new(&(struct redata_config){
	    .backing_fd = fd, .vol = &vol, .kr = kr, .audit_dir = paths.audit_dir});
	if (!rd) {
		cli_error("out of memory");
		goto out;
	}
	failed = 0;
	for (int i = 1; i < o->noperands; i++) {
		const char *rel = o->operands[i] + strspn(o->operands[i], "/");

		if (redata_file(rd, rel, &self, err, sizeof(err)) != 0)
			failed = 1, cli_error("%s", err);
		else
			printf("%s: re-encrypted under a new data key (KEK v%u)\n", rel,
			       keyring_active_version(kr));
	}
out:
	if (fd < 0 && kr)
		cli_error("cannot open %s: %s", backing, strerror(errno));
	redata_free(rd);
	if (fd >= 0)
		close(fd);
	keyring_free(kr);
	volume_clear(&vol);
	return failed;
}

int cmd_rotate_data(int argc, char **argv)
{
	struct redata_opts o;
	struct kekfs_mount m;
	char real[PATH_MAX];
	int mounted = 0, failed = 0;

	if (redata_parse(argc, argv, &o) != 0)
		return 1;
	if (target_is_backing(o.operands[0], real, &m, &mounted)) {
		if (mounted)
			return cli_error("%s is mounted on %s: give paths under %s", o.operands[0],
					 m.mountpoint, m.mountpoint),
			       1;
		if (o.noperands < 2)
			return cli_error("give the paths inside the volume to re-encrypt after %s",
					 real),
			       1;
		if (o.recursive)
			return cli_error("-r walks trees under a mount point: mount %s, or name "
					 "the files after it",
					 real),
			       1;
		return redata_offline(&o, real);
	}
	for (int i = 0; i < o.noperands; i++)
		failed |= redata_operand(&o, o.operands[i]) != 0;
	return failed;
}
