/* kekfs init: a new volume in an empty directory. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "../crypto/aead.h"
#include "../fs/volume.h"
#include "../keyring/audit.h"

#include "cli.h"
#include "extopts.h"
#include "secret.h"
#include "target.h"

static const char init_usage[] =
    "Usage: kekfs init [OPTIONS] BACKING\n"
    "\n"
    "Creates an encrypted volume in BACKING (an empty or new directory): the volume\n"
    "config and a keyring holding KEK v1, unlocked by a passphrase or a key file.\n"
    "\n"
    "  --key-file FILE          unlock with a 32-byte key file (openssl rand -out FILE 32)\n"
    "  --passphrase-file FILE   unlock with the passphrase on the first line of FILE\n"
    "                           (without either, the passphrase is asked on the terminal)\n"
    "  --pkcs11 SPEC [--pin-file F]\n"
    "                           unlock with an AES key in a PKCS#11 token (see 'kekfs keys\n"
    "                           --help'; the token is then the only way in)\n"
    "  --kms-command 'PROG ARGS' [--kms-env VAR]...\n"
    "                           unlock through a KMS plugin (docs/KMS-PLUGINS.md)\n"
    "  --keyring PATH           keep the keyring at PATH, outside the backing directory\n"
    "  --cipher NAME            xchacha20-poly1305 (default) or aes-256-gcm\n"
    "  --plaintext-names        store file names as given (default: encrypted with AES-SIV)\n"
    "  --chunk-size N           plaintext bytes per chunk, a power of two from 512 to 1M\n"
    "                           (default 4096; K and M suffixes allowed)\n"
    "  -h, --help               show this help\n";

/* Parses "4096", "4K", "64k", "1M" into a shift; 0 if not a power of two in range. */
static unsigned parse_chunk_size(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	if (*end == 'k' || *end == 'K')
		v <<= 10, end++;
	else if (*end == 'm' || *end == 'M')
		v <<= 20, end++;
	if (*end != '\0' || v == 0 || (v & (v - 1)) != 0)
		return 0;
	for (unsigned shift = VOLUME_MIN_CHUNK_SHIFT; shift <= VOLUME_MAX_CHUNK_SHIFT; shift++)
		if (v == 1ULL << shift)
			return shift;
	return 0;
}

/* The backing directory must be new or empty: init never mixes with existing files. */
static int backing_check(const char *backing)
{
	char path[PATH_MAX + 32];
	struct dirent *de;
	struct stat st;
	DIR *d;

	if (stat(backing, &st) != 0 && errno == ENOENT)
		return 0; /* init_write creates it */
	snprintf(path, sizeof(path), "%s/%s/%s", backing, VOLUME_DIR, VOLUME_FILE);
	if (access(path, F_OK) == 0)
		return cli_error("%s is already a kekfs volume; mount it, or init a new directory",
				 backing);
	d = opendir(backing);
	if (!d)
		return cli_error("%s is not a directory I can use: %s", backing, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			closedir(d);
			return cli_error("%s is not empty; init needs an empty or new directory",
					 backing);
		}
	}
	closedir(d);
	return 0;
}

struct init_opts {
	struct secret_source src;
	const char *keyring;
	int cipher;
	unsigned chunk_shift;
	int name_mode;
	const char *backing;
};

static int init_parse(int argc, char **argv, struct init_opts *o)
{
	static const struct option longopts[] = {
	    {"key-file", required_argument, NULL, 'k'},
	    {"passphrase-file", required_argument, NULL, 'p'},
	    {"keyring", required_argument, NULL, 'r'},
	    {"cipher", required_argument, NULL, 'c'},
	    {"chunk-size", required_argument, NULL, 's'},
	    {"plaintext-names", no_argument, NULL, 'P'},
	    {"help", no_argument, NULL, 'h'},
	    EXTERNAL_OPTIONS,
	    {NULL, 0, NULL, 0},
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->cipher = AEAD_XCHACHA20_POLY1305;
	o->chunk_shift = 12;
	o->name_mode = NAMES_AES_SIV;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'k':
			o->src.key_file = optarg;
			break;
		case 'p':
			o->src.passphrase_file = optarg;
			break;
		case 'r':
			o->keyring = optarg;
			break;
		case 'c':
			o->cipher = aead_cipher_from_name(optarg);
			if (!o->cipher)
				return cli_error("unknown cipher '%s': use xchacha20-poly1305 or "
						 "aes-256-gcm",
						 optarg);
			break;
		case 's':
			o->chunk_shift = parse_chunk_size(optarg);
			if (!o->chunk_shift)
				return cli_error(
				    "chunk size '%s' is not a power of two from 512 to 1M", optarg);
			break;
		case 'P':
			o->name_mode = NAMES_PLAINTEXT;
			break;
		case 'h':
			fputs(init_usage, stdout);
			exit(0);
		default: /* the first slot may be a token or a KMS plugin */
			if (external_option(c, optarg, &o->src, &o->src) != 0)
				return cli_error("see 'kekfs init --help'");
		}
	}
	if (optind != argc - 1)
		return cli_error("init takes one backing directory: see 'kekfs init --help'");
	o->backing = argv[optind];
	return 0;
}

/* Writes the volume config and keyring; the keyring last, so a failure leaves no volume. */
static int init_write(const struct init_opts *o, struct volume *vol, struct keyring *kr)
{
	char dir[PATH_MAX + 16], vpath[PATH_MAX + 32], kpath[PATH_MAX + 32];
	int rc;

	snprintf(dir, sizeof(dir), "%s/%s", o->backing, VOLUME_DIR);
	snprintf(vpath, sizeof(vpath), "%s/%s", dir, VOLUME_FILE);
	snprintf(kpath, sizeof(kpath), "%s/%s", dir, KEYRING_FILE);
	if (o->keyring && access(o->keyring, F_OK) == 0)
		return cli_error("keyring %s already exists; choose a new path", o->keyring);
	if (mkdir(o->backing, 0700) != 0 && errno != EEXIST)
		return cli_error("cannot create %s: %s", o->backing, strerror(errno));
	if (mkdir(dir, 0700) != 0)
		return cli_error("cannot create %s: %s", dir, strerror(errno));
	rc = keyring_save(kr, o->keyring ? o->keyring : kpath);
	if (rc != KR_OK) {
		cli_error("cannot write keyring %s: %s", o->keyring ? o->keyring : kpath,
			  strerror(errno));
		rmdir(dir);
		return -1;
	}
	vol->generation = keyring_generation(kr);
	if (volume_save(vol, vpath) != VOL_OK) {
		cli_error("cannot write %s: %s", vpath, strerror(errno));
		unlink(o->keyring ? o->keyring : kpath);
		rmdir(dir);
		return -1;
	}
	return 0;
}

/* The audit log's first record: the volume exists, with KEK v1. */
static void init_audit(const char *backing, const struct keyring *kr)
{
	struct audit_event ev = {.op = "init", .kek = 1, .result = "ok"};
	char dir[PATH_MAX + 16];

	snprintf(dir, sizeof(dir), "%s/%s", backing, VOLUME_DIR);
	audit_event_self(&ev);
	if (audit_append(dir, kr, &ev) != 0)
		fprintf(stderr, "kekfs: warning: cannot start the audit log in %s\n", dir);
}

int cmd_init(int argc, char **argv)
{
	struct init_opts o;
	struct kr_secret secret;
	struct keyring *kr = NULL;
	struct volume vol = {0};
	uint8_t volume_id[VOLUME_ID_LEN];
	int rc;

	if (init_parse(argc, argv, &o) != 0 ||
	    target_lock(o.backing, VOLUME_LOCK_READ, "init", "it is a kekfs volume in use") != 0 ||
	    backing_check(o.backing) != 0)
		return 1;
	if (secret_read(&o.src, 1, &secret) != 0)
		return 1;
	randombytes_buf(volume_id, sizeof(volume_id));
	rc = keyring_create(volume_id, &secret, &kr);
	if (rc != KR_OK)
		cli_error("cannot create keyring: %s",
			  rc == KR_ERR_EXTERNAL ? secret.ext->msg : keyring_strerror(rc));
	secret_free(&secret);
	if (rc != KR_OK)
		return 1;
	rc = volume_create(&vol, volume_id, o.cipher, o.chunk_shift, o.name_mode, kr);
	if (rc == VOL_OK)
		rc = init_write(&o, &vol, kr);
	if (rc == VOL_OK) /* makes the lock file: a first mount that is read-only holds it too */
		rc = target_lock(o.backing, VOLUME_LOCK_EXCLUSIVE, "init", "init a new directory");
	if (rc == VOL_OK)
		init_audit(o.backing, kr);
	volume_clear(&vol);
	keyring_free(kr);
	if (rc != 0)
		return 1;
	printf("kekfs: created volume in %s (cipher %s, chunk size %u, %s names, keyring %s)\n",
	       o.backing, aead_cipher_name(o.cipher), 1u << o.chunk_shift,
	       o.name_mode == NAMES_AES_SIV ? "encrypted" : "plaintext",
	       o.keyring ? o.keyring : "inside the backing directory");
	return 0;
}
