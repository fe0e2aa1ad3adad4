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

#include "../backing/atomic_file.h"
#include "../backing/backing.h"
#include "../crypto/aead.h"
#include "../crypto/kdf.h"
#include "../crypto/secmem.h"
#include "../format/volume.h"
#include "../keyring/audit.h"

#include "../volume/namekey.h"
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
    "  --passphrase-command 'PROG [ARGS]'  with the first line PROG prints (no shell)\n"
    "                           (without either, the passphrase is asked on the terminal)\n"
    "  --pkcs11 SPEC [--pin-file F]\n"
    "                           unlock with an AES key in a PKCS#11 token (see 'kekfs keys\n"
    "                           --help'; the token is then the only way in)\n"
    "  --kms-command 'PROG ARGS' [--kms-env VAR]...\n"
    "                           unlock through a KMS plugin (docs/KMS-PLUGINS.md)\n"
    "  --keyring PATH           keep the keyring at PATH, outside the backing directory\n"
    "  --recovery-key FILE      also write a new random recovery key to FILE (0600), a second\n"
    "                           way in: kekfs mount --key-file FILE\n"
    "  --recovery-key -         or show one on the terminal, once, to write down: it unlocks\n"
    "                           when typed at the passphrase prompt, dashes included\n"
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
	backing_meta_path(backing, VOLUME_FILE, path, sizeof(path));
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
	const char *recovery; /* --recovery-key: a new FILE, or "-" for the terminal */
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
	    {"passphrase-command", required_argument, NULL, 'C'},
	    {"keyring", required_argument, NULL, 'r'},
	    {"recovery-key", required_argument, NULL, 'R'},
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
	opterr = 0; /* getopt's own message would begin with a bare "init:" */
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case 'k':
			o->src.key_file = optarg;
			break;
		case 'p':
			o->src.passphrase_file = optarg;
			break;
		case 'C':
			o->src.passphrase_command = optarg;
			break;
		case 'r':
			o->keyring = optarg;
			break;
		case 'R':
			o->recovery = optarg;
			break;
		case 'c':
			o->cipher = aead_cipher_from_name(optarg);
			if (!o->cipher)
				cli_usage(
				    "unknown cipher '%s': use xchacha20-poly1305 or aes-256-gcm",
				    optarg);
			break;
		case 's':
			o->chunk_shift = parse_chunk_size(optarg);
			if (!o->chunk_shift)
				cli_usage("chunk size '%s' is not a power of two from 512 to 1M",
					  optarg);
			break;
		case 'P':
			o->name_mode = NAMES_PLAINTEXT;
			break;
		case 'h':
			fputs(init_usage, stdout);
			exit(0);
		case '?':
		case ':':
			cli_bad_option(c, argv, "init");
		default: /* the first slot may be a token or a KMS plugin */
			if (external_option(c, optarg, &o->src, &o->src) != 0)
				cli_usage("see 'kekfs init --help'");
		}
	}
	if (optind != argc - 1)
		cli_usage("init takes one backing directory: see 'kekfs init --help'");
	o->backing = argv[optind];
	return 0;
}

/* 8 groups of 8 hex digits, dash-separated: the 32 bytes of a recovery key, to be typed. */
#define RECOVERY_TEXT_LEN (8 * 9 - 1)

/* Refuses now what would fail once the volume exists: a FILE that is there, "-" off a tty. */
static int recovery_check(const char *dest)
{
	if (!dest)
		return 0;
	if (strcmp(dest, "-") == 0 && !isatty(STDOUT_FILENO))
		return cli_error(
		    "--recovery-key - shows the key on a terminal, and standard output "
		    "is not one: give a new FILE instead");
	if (strcmp(dest, "-") != 0 && access(dest, F_OK) == 0)
		return cli_error("%s exists: give a new file for the recovery key", dest);
	return 0;
}

/*
 * The recovery secret, in locked memory: 32 random bytes as a key-file slot for a FILE, or as
 * their typed form (RECOVERY_TEXT_LEN) in a passphrase slot for the terminal, so that every
 * command's passphrase prompt takes it with no option of its own.
 */
static int recovery_make(const char *dest, struct kr_secret *r)
{
	uint8_t *key = secmem_alloc(KDF_KEYFILE_LEN);
	char *text = key && strcmp(dest, "-") == 0 ? secmem_alloc(RECOVERY_TEXT_LEN + 1) : NULL;

	memset(r, 0, sizeof(*r));
	if (!key || (strcmp(dest, "-") == 0 && !text)) {
		secmem_free(key);
		return cli_error("out of secure memory");
	}
	randombytes_buf(key, KDF_KEYFILE_LEN);
	r->type = KR_SECRET_KEYFILE;
	r->bytes = key;
	r->len = KDF_KEYFILE_LEN;
	if (!text)
		return 0;
	for (int g = 0; g < 8; g++) { /* bin2hex ends each group with a NUL: a dash, but last */
		sodium_bin2hex(text + g * 9, 9, key + g * 4, 4);
		text[g * 9 + 8] = g < 7 ? '-' : '\0';
	}
	secmem_free(key);
	r->type = KR_SECRET_PASSPHRASE;
	r->bytes = (const uint8_t *)text;
	r->len = RECOVERY_TEXT_LEN;
	return 0;
}

/* Writes the recovery key FILE before the volume exists, so that no volume lacks it. */
static int recovery_write(const char *dest, const struct kr_secret *r)
{
	int rc;

	if (!dest || strcmp(dest, "-") == 0)
		return 0;
	rc = new_file_write(dest, r->bytes, r->len);
	if (rc != 0)
		return cli_error("cannot write the recovery key %s: %s", dest, strerror(-rc));
	return 0;
}

/*
 * Says where the recovery key is, or shows it the one time it is shown: written past stdio,
 * so that no unlocked buffer keeps a copy. -1 if the terminal did not take it.
 */
static int recovery_tell(const char *dest, const struct kr_secret *r, const char *backing)
{
	if (strcmp(dest, "-") != 0) {
		printf("kekfs: recovery key written to %s: it unlocks %s with --key-file %s; keep "
		       "it apart from the volume\n",
		       dest, backing, dest);
		return 0;
	}
	printf("kekfs: the recovery key of %s, shown this once; write it down and keep it apart "
	       "from the volume:\n\n    ",
	       backing);
	fflush(stdout);
	if (write(STDOUT_FILENO, r->bytes, r->len) != (ssize_t)r->len)
		return cli_error("the recovery key could not be shown (%s): remove its slot, 2, "
				 "with 'kekfs keys remove-slot 2 %s'",
				 strerror(errno), backing);
	printf("\n\nIt unlocks the volume when typed at the passphrase prompt, dashes included "
	       "(or from a file: --passphrase-file).\n");
	return 0;
}

/* Writes the volume config and keyring; the keyring last, so a failure leaves no volume. */
static int init_write(const struct init_opts *o, struct volume *vol, struct keyring *kr)
{
	char dir[PATH_MAX + 16], vpath[PATH_MAX + 32], kpath[PATH_MAX + 32];
	int rc;

	if (backing_meta_path(o->backing, NULL, dir, sizeof(dir)) != 0 ||
	    backing_meta_path(o->backing, VOLUME_FILE, vpath, sizeof(vpath)) != 0 ||
	    backing_meta_path(o->backing, KEYRING_FILE, kpath, sizeof(kpath)) != 0)
		return cli_error("%s: %s", o->backing, strerror(ENAMETOOLONG));
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

	backing_meta_path(backing, NULL, dir, sizeof(dir));
	audit_event_self(&ev);
	if (audit_append(dir, kr, &ev) != 0)
		fprintf(stderr, "kekfs: warning: cannot start the audit log in %s\n", dir);
}

/* The success line, and the recovery key if one was asked for; -1 if it could not be shown. */
static int init_tell(const struct init_opts *o, const struct kr_secret *recovery)
{
	printf("kekfs: created volume in %s (cipher %s, chunk size %u, %s names, keyring %s)\n",
	       o->backing, aead_cipher_name(o->cipher), 1u << o->chunk_shift,
	       o->name_mode == NAMES_AES_SIV ? "encrypted" : "plaintext",
	       o->keyring ? o->keyring : "inside the backing directory");
	return o->recovery ? recovery_tell(o->recovery, recovery, o->backing) : 0;
}

/* Creates the keyring (with the recovery slot) and the config, and writes them. */
static int init_volume(const struct init_opts *o, const struct kr_secret *secret,
		       const struct kr_secret *recovery)
{
	struct keyring *kr = NULL;
	struct volume vol = {0};
	uint8_t volume_id[VOLUME_ID_LEN];
	int rc;

	randombytes_buf(volume_id, sizeof(volume_id));
	rc = keyring_create(volume_id, secret, o->recovery ? recovery : NULL, &kr);
	if (rc != KR_OK)
		return cli_error("cannot create keyring: %s",
				 rc == KR_ERR_EXTERNAL ? secret->ext->msg : keyring_strerror(rc));
	rc = volume_create(&vol, volume_id, o->cipher, o->chunk_shift, o->name_mode, kr);
	if (rc == VOL_OK && (rc = recovery_write(o->recovery, recovery)) == 0 &&
	    (rc = init_write(o, &vol, kr)) != 0 && o->recovery && strcmp(o->recovery, "-") != 0)
		unlink(o->recovery); /* it would open nothing */
	if (rc == VOL_OK) /* makes the lock file: a first mount that is read-only holds it too */
		rc = target_lock(o->backing, VOLUME_LOCK_EXCLUSIVE, "init", "init a new directory");
	if (rc == VOL_OK)
		init_audit(o->backing, kr);
	volume_clear(&vol);
	keyring_free(kr);
	return rc == 0 ? 0 : -1;
}

int cmd_init(int argc, char **argv)
{
	struct init_opts o;
	struct kr_secret secret, recovery = {0};
	int rc;

	if (init_parse(argc, argv, &o) != 0 ||
	    target_lock(o.backing, VOLUME_LOCK_READ, "init", "it is a kekfs volume in use") != 0 ||
	    backing_check(o.backing) != 0 || recovery_check(o.recovery) != 0)
		return 1;
	if (o.recovery && recovery_make(o.recovery, &recovery) != 0)
		return 1;
	if (secret_read(&o.src, 1, &secret) != 0) {
		secret_free(&recovery);
		return 1;
	}
	rc = init_volume(&o, &secret, &recovery);
	secret_free(&secret);
	if (rc == 0)
		rc = init_tell(&o, &recovery);
	secret_free(&recovery);
	return rc == 0 ? 0 : 1;
}
