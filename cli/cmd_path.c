/* kekfs path encrypt|decrypt: where a plaintext path lives in the backing directory, and back. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../format/namedir.h"
#include "../format/volume.h"
#include "cli.h"
#include "extopts.h"
#include "secret.h"
#include "target.h"
#include "unlock.h"

static const char path_usage[] =
    "Usage: kekfs path encrypt|decrypt [OPTIONS] BACKING PATH\n"
    "\n"
    "encrypt: prints the backing path of PATH (a path inside the mounted volume, relative to\n"
    "its root). decrypt: prints the plaintext path of PATH (a path inside BACKING, relative to\n"
    "it or absolute). For backups and fsck reports; the volume need not be mounted (BACKING may\n"
    "also be given as its mount point).\n"
    "\n" UNLOCK_USAGE "  -h, --help               show this help\n";

struct path_opts {
	struct secret_source src;
	const char *keyring;
	int encrypt;
	char backing[PATH_MAX];
	const char *path;
};

/* BACKING, or a mount point: its backing directory, which maps the same. */
static int path_backing(const char *arg, char backing[PATH_MAX])
{
	struct kekfs_mount m;

	if (target_real(arg, backing) != 0 || target_volume(arg, backing) != 0)
		return -1;
	if (kekfs_mount_find(backing, 0, &m))
		snprintf(backing, PATH_MAX, "%s", m.backing);
	return 0;
}

static int path_parse(int argc, char **argv, struct path_opts *o)
{
	static const struct option longopts[] = {
	    UNLOCK_OPTIONS,
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c, u;

	memset(o, 0, sizeof(*o));
	opterr = 0; /* getopt's own message would begin with a bare "path:" */
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if ((u = unlock_option(c, optarg, &o->src, NULL, &o->keyring)) < 0)
			cli_usage("see 'kekfs path --help'");
		if (u == 0 && c != 'h')
			cli_bad_option(c, argv, "path");
		if (c == 'h')
			fputs(path_usage, stdout), exit(0);
	}
	if (optind != argc - 3 ||
	    (strcmp(argv[optind], "encrypt") != 0 && strcmp(argv[optind], "decrypt") != 0))
		cli_usage("path takes encrypt|decrypt, BACKING and PATH: see 'kekfs path --help'");
	o->encrypt = strcmp(argv[optind], "encrypt") == 0;
	o->path = argv[optind + 2];
	return path_backing(argv[optind + 1], o->backing);
}

/* Loads the config and unwraps the name key; the keyring is not needed after that. */
static int path_unlock(const struct path_opts *o, struct volume *vol)
{
	struct keyring *kr = NULL;
	int rc = volume_unlock_all(o->backing, o->keyring, &o->src, NULL, vol, &kr);

	keyring_free(kr);
	return rc;
}

/* A backing path given absolutely must lie inside BACKING: strip that prefix. */
static const char *path_inside(const struct path_opts *o)
{
	size_t n = strlen(o->backing);

	if (!o->encrypt && strncmp(o->path, o->backing, n) == 0 &&
	    (o->path[n] == '/' || o->path[n] == '\0'))
		return o->path + n;
	return o->path;
}

static int path_map(const struct path_opts *o, const struct volume *vol, char *out, size_t size)
{
	struct name_keys *nk = NULL;
	int fd = open(o->backing, O_PATH | O_DIRECTORY | O_CLOEXEC), rc;

	if (fd < 0)
		return -errno;
	if (vol->name_mode == NAMES_AES_SIV && !(nk = name_keys_new(vol->name_key))) {
		close(fd);
		return -ENOMEM;
	}
	rc = o->encrypt ? namepath_encrypt(fd, nk, vol->root_dir_id, path_inside(o), out, size)
			: namepath_decrypt(fd, nk, vol->root_dir_id, path_inside(o), out, size);
	name_keys_free(nk);
	close(fd);
	return rc;
}

int cmd_path(int argc, char **argv)
{
	struct path_opts o;
	struct volume vol = {0};
	char out[PATH_MAX * 2];
	int rc;

	if (path_parse(argc, argv, &o) != 0 || path_unlock(&o, &vol) != 0) {
		volume_clear(&vol);
		return 1;
	}
	rc = path_map(&o, &vol, out, sizeof(out));
	volume_clear(&vol);
	if (rc == -EBADMSG)
		return cli_error("%s: a name on this path does not decrypt (tampered, or not "
				 "written through kekfs)",
				 o.path),
		       1;
	if (rc != 0)
		return cli_fail("%s: %s", o.path, strerror(-rc));
	if (o.encrypt)
		printf("%s%s\n", o.backing, out);
	else
		printf("%s\n", out);
	return 0;
}
