/*
 * kekfs fsck BACKING: checks an unmounted volume (volume/fsck.c does the work) and prints one
 * line per problem, then a summary. Exit 0 clean (or all repaired), 1 problems, 2 not run.
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

#include "../volume/fsck.h"
#include "cli.h"
#include "extopts.h"
#include "mounts.h"
#include "progress.h"
#include "target.h"
#include "unlock.h"

enum { FSCK_CLEAN = 0, FSCK_PROBLEMS = 1, FSCK_NOT_RUN = 2 };

static const char fsck_usage[] =
    "Usage: kekfs fsck [OPTIONS] BACKING\n"
    "\n"
    "Checks an unmounted volume: every file header (both wrap slots), every chunk holding\n"
    "data (holes of sparse files are skipped, not read), every name, directory id and\n"
    "long-name side file, symlink targets, the name key, the keyring and the audit log.\n"
    "Prints one line per problem, by plaintext path where it can: PATH: what (what to do).\n"
    "\n"
    "  --repair                 fix what is safe: rewrite a torn wrap slot from its valid\n"
    "                           twin, remove orphan long-name side files and empty\n"
    "                           directories a crash left without a name\n"
    "  --force                  with --repair, also remove crypto-shredded files (their\n"
    "                           contents are already gone); nothing else is ever "
    "deleted\n" UNLOCK_USAGE "  -h, --help               show this help\n"
    "\n"
    "Exit status: 0 clean (or every problem repaired), 1 problems found, 2 could not run\n"
    "(mounted, not a volume, wrong key...).\n";

struct fsck_opts {
	struct secret_source src;
	const char *keyring;
	int repair, force;
	char backing[PATH_MAX];
};

static int fsck_parse(int argc, char **argv, struct fsck_opts *o)
{
	static const struct option longopts[] = {
	    UNLOCK_OPTIONS,
	    {"repair", no_argument, NULL, 'R'},
	    {"force", no_argument, NULL, 'F'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c, u;

	memset(o, 0, sizeof(*o));
	opterr = 0; /* getopt's own message would begin with a bare "fsck:" */
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if ((u = unlock_option(c, optarg, &o->src, NULL, &o->keyring)) != 0) {
			if (u < 0)
				return cli_error("see 'kekfs fsck --help'");
		} else if (c == 'R')
			o->repair = 1;
		else if (c == 'F')
			o->force = 1;
		else if (c == 'h')
			fputs(fsck_usage, stdout), exit(0);
		else
			cli_bad_option(c, argv, "fsck");
	}
	if (optind != argc - 1)
		return cli_error("fsck takes one backing directory: see 'kekfs fsck --help'");
	if (o->force && !o->repair)
		return cli_error("--force only goes with --repair");
	if (!realpath(argv[optind], o->backing))
		return cli_error("%s: %s", argv[optind], strerror(errno));
	return 0;
}

struct fsck_cli {
	const char *backing;
	struct progress bar;
};

/* "PATH: what (what to do)", PATH plaintext from the volume root, or the backing path. */
static void fsck_report(void *arg, const struct fsck_problem *p)
{
	struct fsck_cli *c = arg;

	progress_clear(&c->bar);
	if (p->plain)
		printf("/%s", p->plain);
	else if (p->backing[0] == '/') /* a keyring kept outside the backing directory */
		printf("%s", p->backing);
	else
		printf("%s/%s", c->backing, p->backing);
	printf(": %s (%s)\n", p->what, p->repaired ? "repaired" : p->todo);
	fflush(stdout);
}

static void fsck_progress(void *arg, uint64_t done, uint64_t total)
{
	progress_show(&((struct fsck_cli *)arg)->bar, "checking", done, total);
}

/* Walks the unlocked volume; prints the summary and returns the exit status. */
static int fsck_volume(const struct fsck_opts *o, const struct volume *vol,
		       const struct keyring *kr)
{
	struct fsck_cli c = {.backing = o->backing};
	struct volume_paths paths;
	struct fsck_result res;
	struct timespec t0, t1;
	int fd = open(o->backing, O_PATH | O_DIRECTORY | O_CLOEXEC), rc;

	if (fd < 0)
		return cli_error("cannot open %s: %s", o->backing, strerror(errno)), FSCK_NOT_RUN;
	volume_paths_get(o->backing, o->keyring, &paths);
	progress_init(&c.bar);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = fsck_run(&(struct fsck_config){.backing_fd = fd,
					    .vol = vol,
					    .kr = kr,
					    .audit_dir = paths.audit_dir,
					    .keyring_path = o->keyring,
					    .repair = o->repair,
					    .force = o->force,
					    .report = fsck_report,
					    .progress = fsck_progress,
					    .arg = &c},
		      &res);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	close(fd);
	progress_clear(&c.bar);
	if (rc != 0)
		return cli_error("fsck of %s failed: %s", o->backing, strerror(-rc)), FSCK_NOT_RUN;
	printf("fsck %s: %llu files, %llu directories, %llu symlinks, %llu chunks read in %.1f s: ",
	       o->backing, (unsigned long long)res.files, (unsigned long long)res.dirs,
	       (unsigned long long)res.symlinks, (unsigned long long)res.chunks,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	if (!res.problems)
		puts("clean");
	else
		printf("%llu problem%s, %llu repaired\n", (unsigned long long)res.problems,
		       res.problems == 1 ? "" : "s", (unsigned long long)res.repaired);
	return res.problems > res.repaired ? FSCK_PROBLEMS : FSCK_CLEAN;
}

int cmd_fsck(int argc, char **argv)
{
	struct fsck_opts o;
	struct kekfs_mount m;
	struct volume vol = {0};
	struct keyring *kr = NULL;
	int rc, status = FSCK_NOT_RUN;

	if (fsck_parse(argc, argv, &o) != 0)
		return FSCK_NOT_RUN;
	if (kekfs_mount_find(o.backing, 0, &m) || kekfs_mount_find(o.backing, 1, &m))
		return cli_error("%s is mounted on %s: unmount it first ('kekfs umount %s'), fsck "
				 "checks an unmounted volume",
				 m.backing, m.mountpoint, m.mountpoint),
		       FSCK_NOT_RUN;
	if (target_lock(o.backing, o.repair ? VOLUME_LOCK_EXCLUSIVE : VOLUME_LOCK_READ, "fsck",
			"unmount it first, fsck checks an unmounted volume") != 0)
		return FSCK_NOT_RUN;
	/* Only a repair writes to the volume, so only a repair goes to the audit log. */
	rc = volume_unlock_all(o.backing, o.keyring, &o.src, o.repair ? "fsck" : NULL, &vol, &kr);
	if (rc == 0) {
		status = fsck_volume(&o, &vol, kr);
	} else if (rc == UNLOCK_DAMAGED) {
		printf("fsck %s: 1 problem: the keyring or the volume config (above) cannot be "
		       "used, so nothing else could be checked\n",
		       o.backing);
		status = FSCK_PROBLEMS;
	}
	keyring_free(kr);
	volume_clear(&vol);
	return status;
}
