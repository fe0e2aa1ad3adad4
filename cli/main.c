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
    "  umount MOUNTPOINT             unmount a kekfs mount (also 'unmount')\n"
    "  rotate MOUNTPOINT|BACKING     make a new KEK active and re-wrap every file under it\n"
    "  rotate --data PATH...         re-encrypt files' contents under new DEKs\n"
    "  status [MOUNTPOINT|BACKING]   every mount, or one volume's KEKs and re-wrap progress\n"
    "  keys list|retire|restore|destroy|cancel ...  KEK versions and their states\n"
    "  keys import|policy ...        BYOK import of a KEK; the rotation period\n"
    "  keys slots|add-slot|remove-slot|passwd ...  unlock slots\n"
    "  keys create-token-key ...     make a key on a PKCS#11 token for a token slot\n"
    "  keys backup|restore FILE ...  back up or bring back the keyring and volume config\n"
    "  audit verify MOUNTPOINT|BACKING  check the audit log's chain of MACs\n"
    "  path encrypt|decrypt BACKING PATH  map a plaintext path to its backing path, or back\n"
    "  shred [-r] PATH... | --seal | --verify COPY  crypto-shred files\n"
    "  fsck [--repair [--force]] BACKING  check an unmounted volume, repair what is safe\n"
    "  help [COMMAND]                this help, or COMMAND's (as 'kekfs COMMAND --help')\n"
    "\n"
    "Options:\n"
    "  -h, --help                    show this help (or 'kekfs COMMAND --help')\n"
    "  -V, --version                 the version, on-disk formats and library versions\n";

/* One entry per command, so that 'help' and the dispatch cannot disagree. */
static const struct command {
	const char *name;
	int (*run)(int argc, char **argv);
} commands[] = {
    {"init", cmd_init},	  {"mount", cmd_mount},	  {"umount", cmd_umount}, {"unmount", cmd_umount},
    {"path", cmd_path},	  {"rotate", cmd_rotate}, {"status", cmd_status}, {"keys", cmd_keys},
    {"shred", cmd_shred}, {"audit", cmd_audit},	  {"fsck", cmd_fsck},
};

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

static const struct command *command_named(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

/* 'kekfs help COMMAND' is 'kekfs COMMAND --help', so the two texts are one text. */
static int help_command(int argc, char **argv)
{
	const struct command *cmd;
	char *help_argv[] = {argv[1], "--help", NULL};

	if (argc < 3) {
		fputs(usage, stdout);
		return 0;
	}
	cmd = command_named(argv[2]);
	if (!cmd)
		cli_usage("no command '%s' to show help for: see 'kekfs --help'", argv[2]);
	help_argv[0] = argv[2];
	return cmd->run(2, help_argv);
}

int main(int argc, char **argv)
{
	const struct command *cmd;

	if (argc < 2) {
		fputs(usage, stderr);
		return 2;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		fputs(usage, stdout);
		return 0;
	}
	if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0)
		return cmd_version();
	if (secmem_init() != 0) {
		return cli_fail("cannot initialise libsodium or turn off core dumps");
	}
	host_generation_tracking();
	if (strcmp(argv[1], "help") == 0)
		return help_command(argc, argv);
	cmd = command_named(argv[1]);
	if (cmd)
		return cmd->run(argc - 1, argv + 1);
	if (mount_helper_wanted(argc, argv)) /* from mount(8), mount.fuse3 or fstab */
		return cmd_mount_helper(argc, argv);
	cli_error("unknown command '%s': see 'kekfs --help'", argv[1]);
	return 2;
}
