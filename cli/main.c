/* kekfs: one binary, one subcommand per job. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../crypto/secmem.h"
#include "cli.h"
#include "mount_helper.h"
#include "unlock.h"

static const char usage[] =
    "Usage: kekfs COMMAND [OPTIONS] ...\n"
    "\n"
    "An encrypted FUSE filesystem with per-file keys and rotatable key-encryption keys.\n"
    "\n"
    "Commands:\n"
    "  init BACKING                  create an encrypted volume in an empty directory\n"
    "  mount BACKING MOUNTPOINT      unlock the volume and mount it in plaintext\n"
    "  umount MOUNTPOINT             unmount a kekfs mount\n"
    "  rotate MOUNTPOINT|BACKING     make a new KEK active and re-wrap every file under it\n"
    "  status MOUNTPOINT|BACKING     KEK versions and states, re-wrap progress\n"
    "  keys list|retire|restore|destroy|cancel ...  KEK states (see 'kekfs keys --help')\n"
    "  audit verify MOUNTPOINT|BACKING  check the audit log's chain of MACs\n"
    "  path encrypt|decrypt BACKING PATH  map a plaintext path to its backing path, or back\n"
    "  shred [-r] PATH... | --seal | --verify COPY  crypto-shred files (see 'kekfs shred -h')\n"
    "  fsck [--repair [--force]] BACKING  check an unmounted volume, repair what is safe\n"
    "\n"
    "Options:\n"
    "  -h, --help                    show this help (or 'kekfs COMMAND --help')\n"
    "  -V, --version                 show the version\n";

static void error_line(const char *fmt, va_list ap)
{
	fputs("kekfs: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

int cli_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	error_line(fmt, ap);
	va_end(ap);
	return -1;
}

int cli_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	error_line(fmt, ap);
	va_end(ap);
	return 1;
}

void cli_usage(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	error_line(fmt, ap);
	va_end(ap);
	exit(2);
}

void cli_bad_option(int c, char **argv, const char *command)
{
	const char *opt = optind > 0 ? argv[optind - 1] : "?";

	if (c == ':')
		cli_usage("option '%s' needs a value: see 'kekfs %s --help'", opt, command);
	cli_usage("unknown option '%s': see 'kekfs %s --help'", opt, command);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage, stderr);
		return 2;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		fputs(usage, stdout);
		return 0;
	}
	if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
		printf("kekfs %s\n", KEKFS_VERSION);
		return 0;
	}
	if (secmem_init() != 0) {
		return cli_fail("cannot initialise libsodium or turn off core dumps");
	}
	host_generation_tracking();
	if (strcmp(argv[1], "init") == 0)
		return cmd_init(argc - 1, argv + 1);
	if (strcmp(argv[1], "mount") == 0)
		return cmd_mount(argc - 1, argv + 1);
	if (strcmp(argv[1], "umount") == 0 || strcmp(argv[1], "unmount") == 0)
		return cmd_umount(argc - 1, argv + 1);
	if (strcmp(argv[1], "path") == 0)
		return cmd_path(argc - 1, argv + 1);
	if (strcmp(argv[1], "rotate") == 0)
		return cmd_rotate(argc - 1, argv + 1);
	if (strcmp(argv[1], "status") == 0)
		return cmd_status(argc - 1, argv + 1);
	if (strcmp(argv[1], "keys") == 0)
		return cmd_keys(argc - 1, argv + 1);
	if (strcmp(argv[1], "shred") == 0)
		return cmd_shred(argc - 1, argv + 1);
	if (strcmp(argv[1], "audit") == 0)
		return cmd_audit(argc - 1, argv + 1);
	if (strcmp(argv[1], "fsck") == 0)
		return cmd_fsck(argc - 1, argv + 1);
	if (mount_helper_wanted(argc, argv)) /* from mount(8), mount.fuse3 or fstab */
		return cmd_mount_helper(argc, argv);
	cli_error("unknown command '%s': see 'kekfs --help'", argv[1]);
	return 2;
}
