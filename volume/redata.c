#include "redata.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <sodium.h>

#include "../backing/backing.h"
#include "../crypto/bytes.h"
#include "../crypto/secmem.h"
#include "../format/namedir.h"
#include "../format/objcrypt.h"
#include "fileio.h"
#include "journal_mac.h"
#include "log.h"

#define REDATA_PIECE_CHUNKS 256 /* plaintext chunks re-encrypted per step */
#define REDATA_COPY (1 << 20)	/* bytes copied per step when applying a job */
#define REDATA_MAGIC "kekfs-redata 2"
#define REDATA_MAGIC_UNSIGNED "kekfs-redata 1\n" /* kekfs 0daec58 and older: no MAC */
#define REDATA_MAC_KIND "redata-job"
#define TARGET_MAX 12288 /* an honest JOB.target is at most about 8.8 KiB */
#define HASH_BLOCK 4096	 /* all-zero blocks are left out of the contents' hash */

struct redata {
	struct redata_config cfg;
	struct volume_keys vk;
	struct name_keys *nk; /* NULL on plaintext-name volumes */
};

/*
 * What JOB.target records: how to find the file after a crash, the times to keep, the file
 * ids before and after (the file must carry one of them) and the hash of JOB.ready.
 */
struct job_target {
	dev_t dev;
	ino_t ino;
	struct timespec times[2]; /* atime, mtime */
	char bpath[PATH_MAX];	  /* backing path from the root: found again if not renamed */
	uint8_t old_id[FILE_ID_LEN], new_id[FILE_ID_LEN];
	uint8_t hash[JMAC_LEN];
};

/* One job: files ID.new / ID.ready and ID.target in .kekfs/redata. */
struct job {
	int dirfd;
	char id[JMAC_JOB_HEX + 1];
};

struct redata *redata_new(const struct redata_config *cfg)
{
	struct redata *rd = calloc(1, sizeof(*rd));

	if (!rd)
		return NULL;
	rd->cfg = *cfg;
	if (cfg->vol->name_mode == NAMES_AES_SIV && !(rd->nk = name_keys_new(cfg->vol->name_key))) {
		free(rd);
		return NULL;
	}
	rd->vk = (struct volume_keys){.vol = cfg->vol, .kr = cfg->kr, .nk = rd->nk};
	geom_init(&rd->vk.geom, cfg->vol->cipher, cfg->vol->chunk_shift);
	return rd;
}

void redata_free(struct redata *rd)
{
	if (!rd)
		return;
	name_keys_free(rd->nk);
	free(rd);
}

/* ---- the journal ---- */

/* Opens path beneath root_fd, never through a symlink: -EXDEV if it would leave root_fd. */
static int beneath_open(int root_fd, const char *path, int flags)
{
	return backing_open_beneath(root_fd, path, flags | O_NONBLOCK);
}

static int journal_dir_open(int backing_fd, int create)
{
	int kfd = backing_dir_open(backing_fd, VOLUME_DIR, 1), fd;

	if (kfd < 0)
		return kfd;
	fd = beneath_open(kfd, REDATA_DIR, O_RDONLY | O_DIRECTORY);
	if (fd == -ENOENT && create && mkdirat(kfd, REDATA_DIR, 0700) == 0)
		fd = beneath_open(kfd, REDATA_DIR, O_RDONLY | O_DIRECTORY);
	close(kfd);
	return fd;
}

static void job_file(const struct job *j, const char *suffix, char out[48])
{
	snprintf(out, 48, "%s.%s", j->id, suffix);
}

/* The text of JOB.target before its MAC line; its length, or -ENOSPC. */
static int target_format(const struct job_target *t, char *out, size_t size)
{
	char phex[2 * PATH_MAX + 1];
	char oid[2 * FILE_ID_LEN + 1], nid[2 * FILE_ID_LEN + 1], hash[JMAC_HEX + 1];
	int n;

	sodium_bin2hex(phex, sizeof(phex), (const uint8_t *)t->bpath, strlen(t->bpath));
	sodium_bin2hex(oid, sizeof(oid), t->old_id, FILE_ID_LEN);
	sodium_bin2hex(nid, sizeof(nid), t->new_id, FILE_ID_LEN);
	sodium_bin2hex(hash, sizeof(hash), t->hash, JMAC_LEN);
	n = snprintf(out, size, "%s\n%llu %llu\n%lld %ld %lld %ld\n-1 -\n%s\n%s %s\n%s\n",
		     REDATA_MAGIC, (unsigned long long)t->dev, (unsigned long long)t->ino,
		     (long long)t->times[0].tv_sec, t->times[0].tv_nsec,
		     (long long)t->times[1].tv_sec, t->times[1].tv_nsec, phex, oid, nid, hash);
	return n > 0 && (size_t)n < size ? n : -ENOSPC;
}

/* JOB.target, a new file, with the MAC that binds it to this volume and this job. */
static int target_write(struct redata *rd, const struct job *j, const struct job_target *t)
{
	char name[48], *buf = malloc(TARGET_MAX), hex[JMAC_HEX + 1];
	uint8_t mac[JMAC_LEN];
	int len = buf ? target_format(t, buf, TARGET_MAX - 80) : -ENOMEM, fd = -1, rc = 0;

	if (len < 0)
		rc = len;
	if (rc == 0)
		rc = jmac_compute(rd->cfg.kr, rd->cfg.vol, REDATA_MAC_KIND, j->id, buf, (size_t)len,
				  mac);
	if (rc == 0) {
		sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
		len += snprintf(buf + len, 80, "mac %s\n", hex);
		job_file(j, "target", name);
		fd = openat(j->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			    0600);
		rc = fd < 0 ? -errno : 0;
	}
	if (rc == 0 && (write(fd, buf, (size_t)len) != len || fsync(fd) != 0))
		rc = errno ? -errno : -EIO;
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

_Static_assert(MAX_HANDLE_SZ == 128 && PATH_MAX == 4096, "field widths in target_parse");

/* Parses the authenticated text of JOB.target into t; -EBADMSG if it does not parse. */
static int target_parse(const char *text, struct job_target *t)
{
	char hex[2 * MAX_HANDLE_SZ + 2], phex[2 * PATH_MAX + 2];
	char oid[2 * FILE_ID_LEN + 2], nid[2 * FILE_ID_LEN + 2], hash[JMAC_HEX + 2];
	unsigned long long dev, ino;
	long long as, ms;
	size_t plen = 0, n1 = 0, n2 = 0, n3 = 0;
	int type;

	memset(t, 0, sizeof(*t));
	if (sscanf(text,
		   REDATA_MAGIC "\n%llu %llu %lld %ld %lld %ld %d %257s %8193s %33s %33s %65s",
		   &dev, &ino, &as, &t->times[0].tv_nsec, &ms, &t->times[1].tv_nsec, &type, hex,
		   phex, oid, nid, hash) != 12 ||
	    sodium_hex2bin((uint8_t *)t->bpath, sizeof(t->bpath) - 1, phex, strlen(phex), NULL,
			   &plen, NULL) != 0 ||
	    sodium_hex2bin(t->old_id, FILE_ID_LEN, oid, strlen(oid), NULL, &n1, NULL) != 0 ||
	    sodium_hex2bin(t->new_id, FILE_ID_LEN, nid, strlen(nid), NULL, &n2, NULL) != 0 ||
	    sodium_hex2bin(t->hash, JMAC_LEN, hash, strlen(hash), NULL, &n3, NULL) != 0 ||
	    n1 != FILE_ID_LEN || n2 != FILE_ID_LEN || n3 != JMAC_LEN)
		return -EBADMSG;
	t->dev = (dev_t)dev, t->ino = (ino_t)ino;
	t->times[0].tv_sec = (time_t)as, t->times[1].tv_sec = (time_t)ms;
	(void)type, (void)hex; /* a file handle, no longer used: the path finds the file */
	return 0;
}

/* Reads JOB.target and checks its MAC; -EBADMSG with why if it cannot be trusted. */
static int target_read(struct redata *rd, const struct job *j, struct job_target *t,
		       const char **why)
{
	char name[48], *buf = malloc(TARGET_MAX + 1), *mac;
	ssize_t n = -1;
	int fd, rc = -EBADMSG;

	if (!buf)
		return -ENOMEM;
	job_file(j, "target", name);
	if ((fd = backing_open_file(j->dirfd, name, O_RDONLY, 0)) >= 0) {
		n = read(fd, buf, TARGET_MAX + 1);
		close(fd);
	}
	*why = "its record (JOB.target) is missing, not a regular file, or too long";
	if (n > 0 && n <= TARGET_MAX) {
		buf[n] = '\0';
		mac = strstr(buf, "\nmac ");
		*why = strncmp(buf, REDATA_MAGIC_UNSIGNED, strlen(REDATA_MAGIC_UNSIGNED)) == 0
			   ? "it was written without a MAC (by kekfs 0daec58 or older)"
			   : "its record (JOB.target) does not authenticate (forged or torn)";
		mac = mac && strlen(mac) == 5 + JMAC_HEX + 1 ? mac + 1 : NULL;
		if (mac)
			mac[4 + JMAC_HEX] = '\0';
		if (mac && jmac_verify(rd->cfg.kr, rd->cfg.vol, REDATA_MAC_KIND, j->id, buf,
				       (size_t)(mac - buf), mac + 4) == 0)
			rc = target_parse(buf, t);
	}
	free(buf);
	return rc;
}

/* Removes a job's files; the directory is synced so a finished job never comes back. */
static void job_remove(const struct job *j)
{
	static const char *const suffixes[] = {"ready", "new", "target"};
	char name[48];

	for (size_t i = 0; i < sizeof(suffixes) / sizeof(*suffixes); i++) {
		job_file(j, suffixes[i], name);
		unlinkat(j->dirfd, name, 0);
	}
	fsync(j->dirfd);
}

/* ---- contents ---- */

/* The next data extent of fd in [pos, end), by SEEK_DATA: holes are never read. 1, 0 or -errno. */
static int data_extent(int fd, off_t pos, off_t end, off_t *start, off_t *stop)
{
	off_t d = lseek(fd, pos, SEEK_DATA), h;

	if (d < 0)
		return errno == ENXIO ? 0 : -errno;
	if (d >= end)
		return 0;
	h = lseek(fd, d, SEEK_HOLE);
	if (h < 0)
		return -errno;
	*start = d;
	*stop = h < end ? h : end;
	return 1;
}

/* Hashes the blocks of buf (bytes at off of a file) that are not all zeros, with their offsets. */
static void hash_blocks(crypto_generichash_state *st, const uint8_t *buf, size_t n, uint64_t off)
{
	uint8_t le[8];

	for (size_t i = 0, len; i < n; i += len) {
		len = n - i < HASH_BLOCK ? n - i : HASH_BLOCK;
		if (sodium_is_zero(buf + i, len))
			continue;
		put_le64(le, off + i);
		crypto_generichash_update(st, le, sizeof(le));
		crypto_generichash_update(st, buf + i, len);
	}
}

/*
 * BLAKE2b of the file on fd as read, holes and all-zero blocks left out: the same value
 * whether the file system keeps a run of zeros as a hole or as data.
 */
static int content_hash(int fd, uint8_t out[JMAC_LEN])
{
	uint8_t *buf = malloc(REDATA_COPY), le[8];
	crypto_generichash_state st;
	struct stat sb;
	off_t pos = 0, s, e;
	ssize_t n = 0;
	int rc = !buf ? -ENOMEM : fstat(fd, &sb) != 0 ? -errno : 1;

	crypto_generichash_init(&st, NULL, 0, JMAC_LEN);
	put_le64(le, rc == 1 ? (uint64_t)sb.st_size : 0);
	crypto_generichash_update(&st, le, sizeof(le));
	while (rc == 1 && (rc = data_extent(fd, pos, sb.st_size, &s, &e)) == 1) {
		s = s - s % HASH_BLOCK < pos ? pos : s - s % HASH_BLOCK;
		e = e % HASH_BLOCK == 0 ? e : e - e % HASH_BLOCK + HASH_BLOCK;
		e = e < sb.st_size ? e : sb.st_size;
		for (; rc == 1 && s < e; s += n) {
			n = pread(fd, buf, e - s < REDATA_COPY ? (size_t)(e - s) : REDATA_COPY, s);
			if (n <= 0)
				rc = n < 0 ? -errno : -EIO;
			else
				hash_blocks(&st, buf, (size_t)n, (uint64_t)s);
		}
		pos = e;
	}
	free(buf);
	crypto_generichash_final(&st, out, JMAC_LEN);
	return rc;
}

/* Re-encrypts plaintext [off, end) of the file on fd into the job's file on jfd. */
static int reencrypt_range(struct redata *rd, int fd, struct file_crypt *ofc, int jfd,
			   struct file_crypt *nfc, uint64_t off, uint64_t end, char *buf)
{
	size_t piece = REDATA_PIECE_CHUNKS * rd->vk.geom.size;
	ssize_t n;

	for (; off < end; off += (uint64_t)n) {
		n = fileio_read(fd, &rd->vk, ofc, buf, end - off < piece ? end - off : piece, off);
		if (n == 0)
			return -EIO; /* shorter than its size said */
		if (n > 0)
			n = fileio_write(jfd, &rd->vk, nfc, buf, (size_t)n, off);
		if (n < 0)
			return (int)n;
	}
	return 0;
}

/* Every chunk that holds data, re-encrypted; chunks in holes stay holes. */
static int reencrypt(struct redata *rd, int fd, struct file_crypt *ofc, int jfd,
		     struct file_crypt *nfc, uint64_t plain)
{
	const struct chunk_geom *g = &rd->vk.geom;
	uint64_t stored = g->size + g->overhead, done = 0, first, last;
	off_t pos = HEADER_LEN, s, e, end = (off_t)geom_backing_size(g, plain);
	char *buf = malloc(REDATA_PIECE_CHUNKS * g->size);
	int rc = buf ? 1 : -ENOMEM;

	while (rc == 1 && (rc = data_extent(fd, pos, end, &s, &e)) == 1) {
		first = ((uint64_t)(s < HEADER_LEN ? HEADER_LEN : s) - HEADER_LEN) / stored;
		last = ((uint64_t)e - 1 - HEADER_LEN) / stored;
		first = first * g->size < done ? done / g->size : first;
		done = (last + 1) * g->size < plain ? (last + 1) * g->size : plain;
		if (first * g->size < done)
			rc = reencrypt_range(rd, fd, ofc, jfd, nfc, first * g->size, done, buf);
		rc = rc == 0 ? 1 : rc;
		pos = e;
	}
	if (buf)
		sodium_memzero(buf, REDATA_PIECE_CHUNKS * g->size);
	free(buf);
	if (rc == 0 && fileio_size(jfd, g, &done) == 0 && done < plain)
		rc = fileio_truncate(jfd, &rd->vk, nfc, plain); /* a hole at the end */
	return rc;
}

/* Copies the user.* xattrs of src (as stored: sealed values, backing names) onto dst. */
static int xattrs_copy(int src, int dst)
{
	char *names = malloc(XATTR_LIST_MAX), *val = malloc(XATTR_SIZE_MAX);
	ssize_t len = names && val ? flistxattr(src, names, XATTR_LIST_MAX) : -1, n;
	int rc = names && val ? 0 : -ENOMEM;

	if (rc == 0 && len < 0)
		rc = errno == ENOTSUP ? 0 : -errno;
	for (ssize_t i = 0; rc == 0 && i < len; i += (ssize_t)strlen(names + i) + 1) {
		if (!xattr_is_encrypted(names + i))
			continue;
		n = fgetxattr(src, names + i, val, XATTR_SIZE_MAX);
		if (n < 0 || fsetxattr(dst, names + i, val, (size_t)n, 0) != 0)
			rc = -errno;
	}
	free(names);
	free(val);
	return rc;
}

/* Zeroes [off, off+len) of fd, as a hole where the filesystem can punch one. */
static int zero_range(int fd, off_t off, off_t len)
{
	static const char zeros[4096];
	ssize_t n;

	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0)
		return 0;
	if (errno != EOPNOTSUPP)
		return -errno;
	for (; len > 0; off += n, len -= n) {
		n = pwrite(fd, zeros, len < (off_t)sizeof(zeros) ? (size_t)len : sizeof(zeros),
			   off);
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
	}
	return 0;
}

static int copy_range(int src, int dst, off_t off, off_t len, char *buf)
{
	ssize_t n;

	for (; len > 0; off += n, len -= n) {
		n = pread(src, buf, len < REDATA_COPY ? (size_t)len : REDATA_COPY, off);
		if (n > 0 && pwrite(dst, buf, (size_t)n, off) != n)
			return errno ? -errno : -EIO;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
	}
	return 0;
}

/*
 * Lays the job's file over the target, byte for byte (holes as holes), with its xattrs and
 * the target's old times, then syncs. Idempotent: a crash here is repaired by doing it again.
 */
static int job_apply(int jfd, int tfd, const struct job_target *t)
{
	char *buf = malloc(REDATA_COPY);
	struct stat js;
	off_t pos = 0, s, e;
	int rc = buf ? 0 : -ENOMEM;

	if (rc == 0 && (fstat(jfd, &js) != 0 || ftruncate(tfd, js.st_size) != 0))
		rc = -errno;
	while (rc == 0 && pos < js.st_size) {
		rc = data_extent(jfd, pos, js.st_size, &s, &e);
		if (rc == 0)
			s = e = js.st_size; /* a hole to the end */
		rc = rc < 0 ? rc : s > pos ? zero_range(tfd, pos, s - pos) : 0;
		if (rc == 0 && e > s)
			rc = copy_range(jfd, tfd, s, e - s, buf);
		pos = e;
	}
	free(buf);
	if (rc == 0)
		rc = xattrs_copy(jfd, tfd);
	if (rc == 0 && (futimens(tfd, t->times) != 0 || fsync(tfd) != 0))
		rc = -errno;
	return rc;
}

/* ---- one file ---- */

/*
 * Writes the job's new file (contents and xattrs under a fresh DEK) and its JOB.target, then
 * commits it; returns the new file's fd (to be copied from: never opened again by name).
 */
static int job_prepare(struct redata *rd, const struct job *j, int fd, struct file_crypt *ofc,
		       struct job_target *t)
{
	struct file_crypt nfc = {0};
	char name[48], ready[48];
	uint64_t plain;
	int jfd, rc;

	job_file(j, "new", name);
	job_file(j, "ready", ready);
	jfd = openat(j->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (jfd < 0)
		return -errno;
	rc = fileio_size(fd, &rd->vk.geom, &plain);
	if (rc == 0)
		rc = fileio_create(jfd, &rd->vk, &nfc);
	if (rc == 0)
		rc = reencrypt(rd, fd, ofc, jfd, &nfc, plain);
	if (rc == 0)
		rc = xattrs_copy(fd, jfd);
	if (rc == 0)
		rc = xattr_rekey_fd(jfd, rd->nk, ofc->dek, ofc->hdr.file_id, nfc.dek,
				    nfc.hdr.file_id);
	memcpy(t->old_id, ofc->hdr.file_id, FILE_ID_LEN);
	memcpy(t->new_id, nfc.hdr.file_id, FILE_ID_LEN);
	fileio_drop(&nfc);
	if (rc == 0 && fsync(jfd) != 0)
		rc = -errno;
	if (rc == 0)
		rc = content_hash(jfd, t->hash);
	if (rc == 0)
		rc = target_write(rd, j, t);
	if (rc == 0 && renameat(j->dirfd, name, j->dirfd, ready) != 0) /* the commit */
		rc = -errno;
	if (rc == 0 && fsync(j->dirfd) != 0)
		rc = -errno;
	if (rc != 0)
		close(jfd);
	return rc == 0 ? jfd : rc;
}

/* Copies the committed job's new file (open on jfd) over the target, then drops the job. */
static int job_finish(const struct job *j, int jfd, int tfd, const struct job_target *t)
{
	int rc = job_apply(jfd, tfd, t);

	if (rc == 0)
		job_remove(j);
	return rc;
}

/* Where the file is, and its times, for JOB.target. */
static void target_describe(const struct stat *st, const char *bpath, struct job_target *t)
{
	memset(t, 0, sizeof(*t));
	t->dev = st->st_dev;
	t->ino = st->st_ino;
	t->times[0] = st->st_atim;
	t->times[1] = st->st_mtim;
	snprintf(t->bpath, sizeof(t->bpath), "%s", bpath + strspn(bpath, "/")); /* from the root */
}

/* The file's DEK now in use, for the daemon's open handles; the page cache stays valid. */
static void inode_reload(struct redata *rd, struct kinode *ino, int fd)
{
	if (ino->fc.dek) {
		fileio_drop(&ino->fc);
		if (fileio_load(fd, &rd->vk, &ino->fc) != 0)
			log_msg(LOG_ERR, "re-encrypt: the new key of a file did not load");
	}
	if (ino->cached_valid)
		ino->cached_valid = fstat(fd, &ino->cached) == 0;
}

static void redata_audit(struct redata *rd, const struct audit_actor *actor,
			 const uint8_t old_id[FILE_ID_LEN], const uint8_t new_id[FILE_ID_LEN],
			 int rc)
{
	struct audit_event ev = {.op = "redata", .kek = keyring_active_version(rd->cfg.kr)};
	char a[2 * FILE_ID_LEN + 1], b[2 * FILE_ID_LEN + 1], detail[96];

	sodium_bin2hex(a, sizeof(a), old_id, FILE_ID_LEN);
	sodium_bin2hex(b, sizeof(b), new_id, FILE_ID_LEN);
	snprintf(detail, sizeof(detail), "file %s new %s", a, b);
	ev.detail = detail;
	ev.result = rc == 0 ? "ok" : strerror(-rc);
	ev.uid = actor->uid;
	ev.pid = actor->pid;
	if (audit_append(rd->cfg.audit_dir, rd->cfg.kr, &ev) != 0)
		log_msg(LOG_ERR, "re-encrypt: cannot append to the audit log in %s",
			rd->cfg.audit_dir);
}

/* Re-encrypts the file open on fd (inode st, backing path bpath); ino locked if mounted. */
static int redata_locked(struct redata *rd, const struct job *j, int fd, const struct stat *st,
			 const char *bpath, struct kinode *ino, const struct audit_actor *actor)
{
	struct file_crypt ofc = {0};
	struct job_target t;
	int rc = fileio_load(fd, &rd->vk, &ofc), jfd = -1;

	target_describe(st, bpath, &t);
	if (rc == 0)
		rc = jfd = job_prepare(rd, j, fd, &ofc, &t);
	if (rc < 0) {
		job_remove(j); /* not committed: the file was not touched */
	} else if ((rc = job_finish(j, jfd, fd, &t)) != 0) {
		log_msg(LOG_ERR, "re-encrypt: a committed job could not be applied: %s",
			strerror(-rc));
		rc = -EINPROGRESS; /* the journal keeps it: finished at the next mount */
	}
	if (jfd >= 0)
		close(jfd);
	if (rc == 0 && ino)
		inode_reload(rd, ino, fd);
	if (ofc.dek || rc == 0)
		redata_audit(rd, actor, ofc.hdr.file_id, t.new_id, rc);
	fileio_drop(&ofc);
	return rc;
}

/* A fresh job in the journal directory (created if missing). */
static int job_new(struct redata *rd, struct job *j)
{
	j->dirfd = journal_dir_open(rd->cfg.backing_fd, 1);
	if (j->dirfd < 0)
		return j->dirfd;
	jmac_new_job(j->id);
	return 0;
}

/*
 * Opens the regular file at backing path bpath read-write (its inode in *st) and, with pfd, an
 * O_PATH fd of it for the inode table (which must not hold a writable fd: exec would fail).
 */
static int target_open(struct redata *rd, char *bpath, struct stat *st, int *pfd)
{
	const char *last;
	int dirfd = namepath_open_parent(rd->cfg.backing_fd, bpath, &last), fd;
	struct stat ps;

	if (dirfd < 0)
		return dirfd;
	fd = openat(dirfd, last, O_RDWR | O_NOFOLLOW | O_NOATIME | O_CLOEXEC);
	if (fd < 0 && errno == EPERM) /* O_NOATIME needs ownership or CAP_FOWNER */
		fd = openat(dirfd, last, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		fd = -(errno == ELOOP ? EINVAL : errno);
	else if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode))
		close(fd), fd = -EINVAL;
	if (fd >= 0 && pfd) {
		*pfd = openat(dirfd, last, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (*pfd < 0 || fstat(*pfd, &ps) != 0 || ps.st_ino != st->st_ino) {
			if (*pfd >= 0)
				close(*pfd);
			close(fd), fd = -EAGAIN; /* replaced under us: try again */
		}
	}
	close(dirfd);
	return fd;
}

int redata_file(struct redata *rd, const char *rel, const struct audit_actor *actor, char *err,
		size_t err_size)
{
	struct kinode *ino = NULL;
	struct job j = {.dirfd = -1};
	char bpath[PATH_MAX];
	struct stat st;
	int fd = -1, pfd = -1, rc;

	rc = namepath_encrypt(rd->cfg.backing_fd, rd->nk, rd->cfg.vol->root_dir_id, rel, bpath,
			      sizeof(bpath));
	if (rc == 0)
		rc = fd = target_open(rd, bpath, &st, rd->cfg.inodes ? &pfd : NULL);
	if (rc >= 0 && pfd >= 0 && !(ino = inode_table_hold(rd->cfg.inodes, pfd, &st)))
		rc = -ENOMEM;
	if (rc >= 0)
		rc = job_new(rd, &j);
	if (ino)
		pthread_rwlock_wrlock(&ino->lock);
	if (rc >= 0)
		rc = redata_locked(rd, &j, fd, &st, bpath, ino, actor);
	if (ino)
		pthread_rwlock_unlock(&ino->lock);
	inode_table_release(rd->cfg.inodes, ino);
	if (rc == -EINVAL || rc == -EISDIR)
		snprintf(err, err_size,
			 "%s: not a regular file (only a file's contents have a DEK)", rel);
	else if (rc == -EBADMSG)
		snprintf(err, err_size, "%s: cannot be read (bad header or chunk): nothing changed",
			 rel);
	else if (rc == -EINPROGRESS)
		snprintf(
		    err, err_size,
		    "%s: the new copy is committed but could not be written over the file "
		    "(see the log): it is finished at the next mount or by 'kekfs fsck --repair'",
		    rel);
	else if (rc < 0)
		snprintf(err, err_size, "%s: %s", rel, strerror(-rc));
	if (fd >= 0)
		close(fd);
	if (j.dirfd >= 0)
		close(j.dirfd);
	return rc < 0 ? rc : 0;
}

/* ---- after a crash ---- */

enum job_outcome { JOB_GONE, JOB_FINISHED, JOB_REFUSED };

/* 1 if fd is a regular file and the inode JOB.target names. */
static int is_target_inode(int fd, const struct job_target *t)
{
	struct stat st;

	return fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_dev == t->dev &&
	       st.st_ino == t->ino;
}

/* 1 if fd holds a header of this volume (it opens here) with the job's old or new file id. */
static int is_job_file(struct redata *rd, int fd, const struct job_target *t)
{
	uint8_t hdr[HEADER_LEN], *dek = secmem_alloc(DEK_LEN);
	struct file_header h;
	int ok = dek && pread(fd, hdr, HEADER_LEN, 0) == HEADER_LEN &&
		 header_decode(hdr, rd->cfg.vol, &h) == HDR_OK &&
		 (memcmp(h.file_id, t->old_id, FILE_ID_LEN) == 0 ||
		  memcmp(h.file_id, t->new_id, FILE_ID_LEN) == 0) &&
		 header_open_dek(&h, rd->cfg.vol, rd->cfg.kr, dek) == HDR_OK;

	secmem_free(dek);
	return ok;
}

/*
 * The file a committed job was for, read-write, found beneath the backing root (or by its
 * handle if renamed); -ENOENT if it was deleted or replaced since, -EPERM (why set) if the
 * path leaves the volume or the file there does not carry the job's file id.
 */
static int target_find(struct redata *rd, struct job_target *t, const char **why)
{
	int fd = beneath_open(rd->cfg.backing_fd, t->bpath, O_RDWR);

	if (fd == -EXDEV || fd == -ELOOP) {
		*why = "its path leaves the volume (absolute, '..' or a symlink on the way)";
		return -EPERM;
	}
	if (!is_target_inode(fd, t)) {
		if (fd >= 0)
			close(fd);
		return -ENOENT;
	}
	if (!is_job_file(rd, fd, t)) {
		close(fd);
		*why = "its target is not the kekfs file it was made for (another file id)";
		return -EPERM;
	}
	return fd;
}

/* JOB.ready, open, if it still holds what JOB.target says was committed; why if not. */
static int ready_open(const struct job *j, const struct job_target *t, const char **why)
{
	uint8_t hash[JMAC_LEN];
	char ready[48];
	int fd, rc;

	job_file(j, "ready", ready);
	fd = backing_open_file(j->dirfd, ready, O_RDONLY, 0);
	if (fd < 0) {
		*why = "its new file (JOB.ready) is not a regular file";
		return -EPERM;
	}
	rc = content_hash(fd, hash);
	if (rc == 0 && sodium_memcmp(hash, t->hash, JMAC_LEN) != 0) {
		*why = "its new file (JOB.ready) was changed after the commit";
		rc = -EPERM;
	}
	if (rc != 0)
		close(fd);
	return rc == 0 ? fd : rc;
}

/* Finishes one committed job (only checks it, with check_only): a job_outcome or -errno. */
static int job_resume(struct redata *rd, const struct job *j, const char **why)
{
	struct job_target t;
	int jfd = -1, fd = -1, rc = target_read(rd, j, &t, why);

	if (rc == 0)
		rc = jfd = ready_open(j, &t, why);
	if (rc >= 0)
		rc = fd = target_find(rd, &t, why);
	if (rc == -ENOENT && !rd->cfg.check_only)
		job_remove(j); /* its file was deleted since: nothing to finish */
	if (rc >= 0 && !rd->cfg.check_only)
		rc = job_finish(j, jfd, fd, &t);
	if (fd >= 0)
		close(fd);
	if (jfd >= 0)
		close(jfd);
	if (rc == -EBADMSG || rc == -EPERM)
		return JOB_REFUSED;
	return rc == -ENOENT ? JOB_GONE : rc < 0 ? rc : JOB_FINISHED;
}

/* A refused job: one log line, or the caller's report (fsck); the job stays in place. */
static void job_refuse(struct redata *rd, const struct job *j, const char *why)
{
	if (rd->cfg.refused)
		rd->cfg.refused(rd->cfg.refused_arg, j->id, why);
	else
		log_msg(LOG_ERR,
			"re-encrypt: journal job %s refused, not applied: %s; it stays in "
			".kekfs/%s for 'kekfs fsck' to report",
			j->id, why, REDATA_DIR);
}

/* What a name in the journal directory is: its job id into j, and the suffix. */
static const char *job_of(const char *name, struct job *j)
{
	const char *dot = strchr(name, '.');

	if (!dot || dot - name != JMAC_JOB_HEX)
		return NULL;
	memcpy(j->id, name, JMAC_JOB_HEX);
	j->id[JMAC_JOB_HEX] = '\0';
	return dot + 1;
}

/* One entry of the journal directory: a committed job resumed, an uncommitted one dropped. */
static int journal_entry(struct redata *rd, struct job *j, const char *suffix, int *finished)
{
	const char *why = "";
	struct stat st;
	char ready[48];
	int one;

	if (strcmp(suffix, "ready") != 0) {
		job_file(j, "ready", ready);
		if (!rd->cfg.check_only && fstatat(j->dirfd, ready, &st, AT_SYMLINK_NOFOLLOW) != 0)
			job_remove(j); /* never committed: the file was not touched */
		return 0;
	}
	one = job_resume(rd, j, &why);
	if (one == JOB_REFUSED)
		job_refuse(rd, j, why);
	*finished += one == JOB_FINISHED;
	return one < 0 ? one : 0;
}

int redata_resume(struct redata *rd, char *err, size_t err_size)
{
	struct job j = {.dirfd = journal_dir_open(rd->cfg.backing_fd, 0)};
	int dfd = j.dirfd < 0 ? -1 : dup(j.dirfd), finished = 0, rc = 0, one;
	DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
	const char *suffix;
	struct dirent *de;

	if (j.dirfd == -ENOENT)
		return 0;
	while (d && (de = readdir(d)) != NULL)
		if ((suffix = job_of(de->d_name, &j)) &&
		    (one = journal_entry(rd, &j, suffix, &finished)) < 0)
			rc = rc ? rc : one;
	if (!d)
		rc = j.dirfd < 0 ? j.dirfd : -errno;
	if (d)
		closedir(d);
	else if (dfd >= 0)
		close(dfd);
	if (j.dirfd >= 0)
		close(j.dirfd);
	if (rc < 0)
		snprintf(err, err_size,
			 "an interrupted re-encryption (.kekfs/%s) cannot be finished: %s",
			 REDATA_DIR, strerror(-rc));
	else if (finished && !rd->cfg.check_only)
		log_msg(LOG_NOTICE, "re-encrypt: finished %d file%s interrupted by a crash",
			finished, finished == 1 ? "" : "s");
	return rc < 0 ? rc : finished;
}

int redata_pending(int backing_fd)
{
	int fd = journal_dir_open(backing_fd, 0), found = 0;
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	struct dirent *de;
	struct job j;
	const char *suffix;

	while (d && !found && (de = readdir(d)) != NULL)
		found = (suffix = job_of(de->d_name, &j)) && strcmp(suffix, "ready") == 0;
	if (d)
		closedir(d);
	else if (fd >= 0)
		close(fd);
	return found;
}
