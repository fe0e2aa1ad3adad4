/*
 * mount(8) runs a helper as 'mount.TYPE SOURCE MOUNTPOINT [-sfnv] [-N NS] [-o OPTS]'; for
 * type fuse.kekfs, mount.fuse3 runs 'kekfs SOURCE MOUNTPOINT -o OPTS'. Both become an
 * ordinary 'kekfs mount -o OPTS SOURCE MOUNTPOINT', so every check, message and the
 * return-only-when-ready behaviour are the same as by hand.
 */
#include "mount_helper.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

int mount_helper_wanted(int argc, char **argv)
{
	if (strcmp(base_name(argv[0]), "mount.kekfs") == 0)
		return 1;
	/* mount(8) always passes the mount point as an absolute, canonical path. */
	return argc >= 3 && argv[1][0] != '-' && argv[2][0] == '/';
}

enum generic_opt mount_opt_generic(const char *opt)
{
	/* Meaningful to mount(8), fstab or systemd only; mount.fuse3 drops some, not all. */
	static const char *const ignored[] = {
	    "defaults",	  "auto",	"noauto",      "nofail",   "_netdev",
	    "user",	  "users",	"nouser",      "owner",	   "group",
	    "relatime",	  "norelatime", "strictatime", "lazytime", "nolazytime",
	    "nodiratime", "diratime",	"loud",	       "silent",   NULL,
	};
	/* Kernel mount flags: libfuse hands these to mount(2). */
	static const char *const kernel[] = {
	    "nosuid",  "suid",	"nodev", "dev",	  "noexec",  "exec",
	    "noatime", "atime", "sync",	 "async", "dirsync", NULL,
	};

	if (strncmp(opt, "x-", 2) == 0 || strncmp(opt, "comment=", 8) == 0)
		return GENERIC_IGNORED;
	for (int i = 0; ignored[i]; i++)
		if (strcmp(opt, ignored[i]) == 0)
			return GENERIC_IGNORED;
	for (int i = 0; kernel[i]; i++)
		if (strcmp(opt, kernel[i]) == 0)
			return GENERIC_KERNEL;
	return GENERIC_UNKNOWN;
}

/* Options after SOURCE MOUNTPOINT; collects every -o (mount(8) may give several). */
static int helper_parse(int argc, char **argv, char *opts, size_t size, int *fake)
{
	int c;

	opts[0] = '\0';
	optind = 1;
	while ((c = getopt(argc, argv, "sfnvN:o:t:")) != -1) {
		switch (c) {
		case 'f':
			*fake = 1;
			break;
		case 'o':
			if (strlen(opts) + strlen(optarg) + 2 > size)
				return cli_error("mount options too long");
			if (opts[0])
				strcat(opts, ",");
			strcat(opts, optarg);
			break;
		case 'N':
			return cli_error("mount -N (another mount namespace) is not supported");
		case 's': /* sloppy, no mtab, verbose, type: nothing to do for kekfs */
		case 'n':
		case 'v':
		case 't':
			break;
		default:
			return cli_error("usage: mount.kekfs BACKING MOUNTPOINT [-o OPTIONS]");
		}
	}
	if (optind != argc)
		return cli_error("unexpected argument '%s': usage: mount.kekfs BACKING MOUNTPOINT "
				 "[-o OPTIONS]",
				 argv[optind]);
	return 0;
}

int cmd_mount_helper(int argc, char **argv)
{
	static char opts[8192];
	char *source, *target, *margv[7];
	int fake = 0;

	if (argc < 3)
		return cli_fail("usage: mount.kekfs BACKING MOUNTPOINT [-o OPTIONS]");
	source = argv[1];
	target = argv[2];
	/* getopt sees PROG then the options: SOURCE and MOUNTPOINT are taken out first. */
	argv[2] = argv[0];
	if (helper_parse(argc - 2, argv + 2, opts, sizeof(opts), &fake) != 0)
		return 1;
	if (fake)
		return 0;
	margv[0] = "mount";
	margv[1] = "-o";
	margv[2] = opts;
	margv[3] = "--";
	margv[4] = source;
	margv[5] = target;
	margv[6] = NULL;
	optind = 1;
	return cmd_mount(6, margv);
}
