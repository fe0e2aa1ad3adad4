#include "fsck.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../crypto/secmem.h"
#include "../format/linktarget.h"
#include "../format/namedir.h"
#include "../format/objcrypt.h"
#include "../keyring/audit.h"
#include "fileio.h"
#include "redata.h"
#include "rotation.h"
#include "shred.h"
#include "walk.h"

#define RESTORE "restore it from a backup"

/* What a directory's entries need: its id, and its two paths. */
struct fsck_dir {
	uint8_t id[NAME_DIRID_LEN];
	int id_ok;
	char *plain;   /* NULL when a name above it does not decrypt */
	char *backing; /* "" for the root */
};

struct fsck_run {
	const struct fsck_config *cfg;
	struct fsck_result *res;
	struct volume_keys vk;
	struct name_keys *nk; /* NULL on plaintext-name volumes */
	struct fsck_dir *dirs;
	size_t ndirs;
	uint64_t total; /* regular files, for the progress bar */
	void *links;	/* (dev, ino) of files with several names, checked once */
	void *link_refs; /* side objects that symlinks name (format/linktarget.h) */
	char *buf;	/* one chunk of plaintext */
};

/* Reports one problem: "what" is formatted, todo says what to do about it. */
__attribute__((format(printf, 6, 7))) static void problem(struct fsck_run *r, const char *plain,
							  const char *backing, int repaired,
							  const char *todo, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	r->res->problems++;
	r->res->repaired += repaired != 0;
	r->cfg->report(r->cfg->arg, &(struct fsck_problem){.plain = plain,
							   .backing = backing,
							   .what = what,
							   .todo = todo,
							   .repaired = repaired});
}

/* parent + "/" + name, or name at the root; NULL parent stays NULL. */
static char *path_join(const char *parent, const char *name)
{
	char *out = NULL;

	if (parent && asprintf(&out, "%s%s%s", parent, parent[0] ? "/" : "", name) < 0)
		out = NULL;
	return out;
}

/* ---- the volume's own files ---- */

/* Torn or tampered name-key slots (the one in use opened already, at unlock). */
static void check_volume_slots(struct fsck_run *r)
{
	const struct volume *v = r->cfg->vol;
	static const uint8_t zero[WRAP_SLOT_LEN];
	int state[2];

	volume_check_slots(v, r->cfg->kr, state);
	for (int i = 0; i < 2; i++) {
		if (i == v->current || memcmp(v->slots[i], zero, WRAP_SLOT_LEN) == 0)
			continue;
		if (state[i] == SLOT_ERR_CORRUPT)
			problem(
			    r, NULL, VOLUME_DIR "/" VOLUME_FILE, 0,
			    "the next 'kekfs rotate' rewrites it",
			    "name key wrap slot %c is torn (fails its checksum); the other opens",
			    'A' + i);
		else if (state[i] == SLOT_ERR_AUTH)
			problem(r, NULL, VOLUME_DIR "/" VOLUME_FILE, 0,
				"the next 'kekfs rotate' rewrites it",
				"name key wrap slot %c does not authenticate (tampered)", 'A' + i);
	}
}

/* What fsck says of a marker that is there: unfinished job, or one to ignore. */
struct marker_report {
	const char *path, *pending_hint, *pending_what, *forged_hint, *forged_what;
};

static const struct marker_report rewrap_report = {
    VOLUME_DIR "/" REWRAP_MARKER, "mount the volume, or run 'kekfs rotate --resume'",
    "a KEK rotation's re-wrap was left unfinished",
    "no re-wrap resumes from it (--repair leaves it): if a rotation of yours was "
    "interrupted, run 'kekfs rotate --force', else remove the file",
    "the re-wrap marker is not authenticated (forged, or left by kekfs 0daec58 or older)"};

static const struct marker_report seal_report = {
    VOLUME_DIR "/" SEAL_MARKER, "mount the volume, or run 'kekfs shred --seal' again",
    "a 'kekfs shred --seal' was left unfinished",
    "it destroys no KEK (--repair leaves it): if a seal of yours was interrupted, run "
    "'kekfs shred --seal' again, else remove the file",
    "the seal marker is not authenticated or is stale (forged, replayed, or left by kekfs "
    "0daec58 or older)"};

static void marker_reported(struct fsck_run *r, enum marker_state state,
			    const struct marker_report *m)
{
	if (state == MARKER_AUTHENTIC)
		problem(r, NULL, m->path, 0, m->pending_hint, "%s", m->pending_what);
	else if (state == MARKER_UNAUTHENTICATED)
		problem(r, NULL, m->path, 0, m->forged_hint, "%s", m->forged_what);
}

/* A bad copy of the keyring or of the config: the good copy was used (docs/FORMAT.md). */
static void check_copies(struct fsck_run *r)
{
	static const char todo[] = "run 'kekfs fsck --repair', or mount read-write: it is "
				   "rewritten from the good copy";
	const char *kpath =
	    r->cfg->keyring_path ? r->cfg->keyring_path : VOLUME_DIR "/" KEYRING_FILE;
	int rewritten = 0;
	unsigned bad = keyring_bad_copies(r->cfg->kr, &rewritten);

	for (int i = 0; i < 2; i++) {
		if (bad & (COPY_1_BAD << i))
			problem(r, NULL, kpath, rewritten, todo,
				"copy %d of the keyring is damaged; copy %d is good", i + 1, 2 - i);
		if (r->cfg->vol->bad_copies & (COPY_1_BAD << i))
			problem(r, NULL, VOLUME_DIR "/" VOLUME_FILE, r->cfg->vol->copies_rewritten,
				todo, "copy %d of the volume config is damaged; copy %d is good",
				i + 1, 2 - i);
	}
}

/* The re-wrap and seal markers; one without a valid MAC is reported, never acted on. */
static void check_markers(struct fsck_run *r)
{
	int fd = r->cfg->backing_fd;

	marker_reported(r, marker_check(fd, r->cfg->vol, r->cfg->kr, REWRAP_MARKER, NULL),
			&rewrap_report);
	marker_reported(r, seal_marker_state(fd, r->cfg->vol, r->cfg->kr), &seal_report);
}

/* A journal job replay refused: reported, never applied, and left in place. */
static void redata_refused(void *arg, const char *job, const char *why)
{
	char backing[64], todo[256];

	snprintf(backing, sizeof(backing), "%s/%s/%s.ready", VOLUME_DIR, REDATA_DIR, job);
	snprintf(todo, sizeof(todo),
		 "not applied, and --repair leaves it: if it is an interrupted 'kekfs rotate "
		 "--data' of kekfs 0daec58 or older, finish it with that version; else remove "
		 "%s/%s/%s.*",
		 VOLUME_DIR, REDATA_DIR, job);
	problem(arg, NULL, backing, 0, todo, "a file re-encryption job is refused: %s", why);
}

/*
 * A file re-encryption a crash left committed: until it is finished the file reads as a mix
 * of old and new chunks, so --repair finishes it before the files are checked.
 */
static void check_redata(struct fsck_run *r)
{
	const struct fsck_config *c = r->cfg;
	struct redata *rd = NULL;
	char err[256];
	int n;

	if (!redata_pending(c->backing_fd))
		return;
	rd = redata_new(&(struct redata_config){.backing_fd = c->backing_fd,
						.vol = c->vol,
						.kr = c->kr,
						.audit_dir = c->audit_dir,
						.check_only = !c->repair,
						.refused = redata_refused,
						.refused_arg = r});
	n = rd ? redata_resume(rd, err, sizeof(err)) : -ENOMEM;
	redata_free(rd);
	if (n < 0)
		problem(r, NULL, VOLUME_DIR "/" REDATA_DIR, 0,
			"check the backing directory, then run 'kekfs fsck --repair' again", "%s",
			rd ? err : "out of memory");
	else if (n > 0)
		problem(r, NULL, VOLUME_DIR "/" REDATA_DIR, c->repair,
			"mount the volume read-write, or run 'kekfs fsck --repair', to finish it",
			"a file re-encryption ('kekfs rotate --data') was interrupted after its "
			"commit");
}

static void check_audit(struct fsck_run *r)
{
	char msg[512];
	unsigned long lines;

	if (faccessat(r->cfg->backing_fd, VOLUME_DIR "/" AUDIT_FILE, F_OK, 0) != 0)
		return; /* volumes made before the audit log have none */
	if (audit_verify(r->cfg->audit_dir, r->cfg->kr, &lines, msg, sizeof(msg)) != 0)
		problem(r, NULL, VOLUME_DIR "/" AUDIT_FILE, 0,
			"keep a copy as evidence and find out who edited it",
			"the audit log's chain is broken: %s", msg);
}

/* ---- regular files ---- */

/* What to do about a header wrapped by a KEK this keyring cannot use, by the KEK's state. */
static void kek_problem(struct fsck_run *r, const char *plain, const char *backing, int fd)
{
	uint8_t buf[HEADER_LEN];
	uint32_t v = 0;
	enum kek_state state;
	char todo[160];

	if (pread(fd, buf, HEADER_LEN, 0) == HEADER_LEN)
		header_current_version(buf, &v);
	state = keyring_kek_state(r->cfg->kr, v);
	if (state == KEK_RETIRED)
		snprintf(todo, sizeof(todo), "restore the KEK with 'kekfs keys restore %u'", v);
	else if (state == KEK_PENDING_DESTRUCTION)
		snprintf(todo, sizeof(todo), "cancel its destruction with 'kekfs keys cancel %u'",
			 v);
	else if (state == KEK_DESTROYED)
		snprintf(todo, sizeof(todo), "its contents are gone: remove it");
	else
		snprintf(todo, sizeof(todo), "use the keyring it was written with, or " RESTORE);
	if (state == KEK_UNKNOWN)
		problem(r, plain, backing, 0, todo,
			"its key is wrapped by KEK v%u, which this keyring does not have", v);
	else
		problem(r, plain, backing, 0, todo, "its key is wrapped by KEK v%u, which is %s", v,
			kek_state_name(state));
}

/* Why a header does not open (fileio_load's reason), as one problem. */
static void header_problem(struct fsck_run *r, const char *plain, const char *backing, int fd,
			   int err)
{
	struct stat st;
	uint64_t size;

	if (err == HDR_ERR_KEK_MISSING || err == HDR_ERR_KEK_DESTROYED)
		kek_problem(r, plain, backing, fd);
	else if (err == HDR_ERR_CORRUPT)
		problem(r, plain, backing, 0, RESTORE,
			"both wrap slots of its header fail their checksum (torn or overwritten): "
			"its key is lost");
	else if (err == HDR_ERR_AUTH)
		problem(
		    r, plain, backing, 0, RESTORE,
		    "its header does not authenticate (tampered, or copied from another volume)");
	else if (err == HDR_ERR_MAGIC)
		problem(
		    r, plain, backing, 0, "move it out of the backing directory",
		    "not a kekfs file (no KKFS header): put into the backing directory directly?");
	else if (err == HDR_ERR_SIZE && fstat(fd, &st) == 0 &&
		 geom_plain_size(&r->vk.geom, (uint64_t)st.st_size, &size) != 0)
		problem(r, plain, backing, 0, RESTORE,
			"its size (%lld bytes) is not one kekfs writes: truncated or appended to",
			(long long)st.st_size);
	else if (err == HDR_ERR_SIZE)
		problem(r, plain, backing, 0, RESTORE,
			"its only chunk does not authenticate (tampered, or cut down to nothing)");
	else
		problem(r, plain, backing, 0, RESTORE, "%s", header_strerror(err));
}

/* The header's other slot: empty, or one that opens or wraps an old KEK, is fine. */
static void check_spare_slot(struct fsck_run *r, int fd, const struct file_crypt *fc,
			     const char *plain, const char *backing)
{
	static const uint8_t zero[WRAP_SLOT_LEN];
	int spare = 1 - fc->hdr.current, state[2], err, fixed = 0;

	if (memcmp(fc->hdr.slots[spare], zero, WRAP_SLOT_LEN) == 0)
		return;
	header_check_slots(&fc->hdr, r->cfg->vol, r->cfg->kr, state);
	if (state[spare] == SLOT_ERR_CORRUPT) {
		/* Rewriting the spare slot is what every re-wrap does: the twin stays valid. */
		if (r->cfg->repair)
			fixed = fileio_rewrap(fd, &r->vk, 1, &err) == 1 && fdatasync(fd) == 0;
		problem(r, plain, backing, fixed, "run 'kekfs fsck --repair'",
			"wrap slot %c of its header is torn (fails its checksum); it opens with "
			"slot %c",
			'A' + spare, 'A' + fc->hdr.current);
	} else if (state[spare] == SLOT_ERR_AUTH) {
		problem(
		    r, plain, backing, 0, "the next 'kekfs rotate' rewrites it",
		    "wrap slot %c of its header does not authenticate (tampered); it opens with "
		    "slot %c",
		    'A' + spare, 'A' + fc->hdr.current);
	}
}

/* The chunk that holds backing offset off (the header counts as chunk 0's). */
static uint64_t chunk_at(const struct chunk_geom *g, off_t off)
{
	return off < HEADER_LEN ? 0 : ((uint64_t)off - HEADER_LEN) / (g->size + g->overhead);
}

/*
 * The first chunk from idx on that holds data, or last. A chunk inside a hole is all zero
 * bytes, which reads as zeros: it is skipped unread, so a 1 TiB sparse file costs only its
 * data. The last chunk is always read: it must authenticate. *end: where that data ends.
 */
static uint64_t next_data_chunk(int fd, const struct chunk_geom *g, uint64_t idx, uint64_t last,
				uint64_t *end)
{
	off_t d = lseek(fd, (off_t)geom_chunk_off(g, idx), SEEK_DATA), h;

	*end = UINT64_MAX;
	if (d < 0)
		return errno == ENXIO ? last : idx; /* no data left, or no SEEK_DATA: read all */
	h = lseek(fd, d, SEEK_HOLE);
	if (h >= 0)
		*end = (uint64_t)h;
	idx = chunk_at(g, d) > idx ? chunk_at(g, d) : idx;
	return idx < last ? idx : last;
}

/* 1 if the last chunk opens as a non-final one: the file was cut at a chunk boundary. */
static int cut_at_boundary(struct fsck_run *r, int fd, const struct file_crypt *fc, uint64_t last,
			   uint64_t size)
{
	const struct chunk_geom *g = &r->vk.geom;
	size_t len = (size_t)(size - last * g->size + g->overhead);
	uint8_t *in = malloc(len);
	int cut = in && pread(fd, in, len, (off_t)geom_chunk_off(g, last)) == (ssize_t)len &&
		  chunk_open(g, fc->dek, fc->hdr.file_id, last, 0, in, len, (uint8_t *)r->buf) == 0;

	free(in);
	return cut;
}

/* Reads every chunk that holds data; names the first that does not authenticate. */
static void check_chunks(struct fsck_run *r, int fd, struct file_crypt *fc, const char *plain,
			 const char *backing)
{
	const struct chunk_geom *g = &r->vk.geom;
	uint64_t size, last, end = 0, bad = 0, first_bad = 0;

	if (fileio_size(fd, g, &size) != 0)
		return; /* fileio_load checked it */
	last = geom_nchunks(g, size) - 1;
	for (uint64_t i = 0; i <= last; i++) {
		if (geom_chunk_off(g, i) >= end)
			i = next_data_chunk(fd, g, i, last, &end);
		r->res->chunks++;
		if (fileio_read(fd, &r->vk, fc, r->buf, g->size, i * g->size) >= 0)
			continue;
		if (i == last && cut_at_boundary(r, fd, fc, last, size)) {
			problem(
			    r, plain, backing, 0, RESTORE,
			    "it was cut short at a chunk boundary: its last chunk (%llu) is not "
			    "sealed as the last, so what followed it is missing",
			    (unsigned long long)last);
			continue;
		}
		if (bad++ == 0)
			first_bad = i;
	}
	if (bad == 1)
		problem(r, plain, backing, 0, RESTORE "; its other chunks still read",
			"chunk %llu (at plaintext offset %llu) does not authenticate (tampered or "
			"damaged)",
			(unsigned long long)first_bad, (unsigned long long)(first_bad * g->size));
	else if (bad > 1)
		problem(r, plain, backing, 0, RESTORE "; its other chunks still read",
			"chunk %llu and %llu more do not authenticate (tampered or damaged)",
			(unsigned long long)first_bad, (unsigned long long)(bad - 1));
}

/* A shredded header with a name left: with --repair --force that name goes. */
static void check_shredded(struct fsck_run *r, int dirfd, const char *name, const char *plain,
			   const char *backing)
{
	char side[NAME_LONG_LEN + 2];
	int removed = 0;

	if (r->cfg->repair && r->cfg->force) {
		removed = unlinkat(dirfd, name, 0) == 0;
		if (removed && r->nk && name_is_long(name)) {
			snprintf(side, sizeof(side), ".%s", name);
			unlinkat(dirfd, side, 0);
		}
	}
	problem(r, plain, backing, removed,
		"its contents are gone: remove it ('kekfs fsck --repair "
		"--force' does)",
		"crypto-shredded: its key was wiped, but this name of it is left");
}

/* Read-write only when repairing; a file that refuses that is still checked. */
static int open_file(const struct fsck_run *r, int dirfd, const char *name)
{
	int fd = -1;

	if (r->cfg->repair)
		fd = openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) /* O_NONBLOCK: a FIFO swapped in after the walk's fstatat must not block */
		fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	return fd;
}

static int ino_cmp(const void *a, const void *b)
{
	const struct stat *x = a, *y = b;

	if (x->st_dev != y->st_dev)
		return x->st_dev < y->st_dev ? -1 : 1;
	return x->st_ino < y->st_ino ? -1 : x->st_ino > y->st_ino;
}

/* 1 if this is a further name of a hard-linked file already checked under another. */
static int seen_before(struct fsck_run *r, const struct stat *st)
{
	struct stat *key;
	void **found;

	if (st->st_nlink < 2 || !(key = malloc(sizeof(*key))))
		return 0;
	*key = *st;
	found = tsearch(key, &r->links, ino_cmp);
	if (found && *found != key) {
		free(key);
		return 1;
	}
	if (!found)
		free(key);
	return 0;
}

/*
 * What a kill -9 leaves and files open through (volume/fileio.h, enum fileio_torn): a 0-byte
 * file (1: reported; --repair gives it its header), or a torn tail (reported, trimmed on
 * --repair by the load that follows, through the read-write fd). 0 for anything else.
 */
static int crash_cut(struct fsck_run *r, int fd, const struct stat *st, const char *plain,
		     const char *backing)
{
	struct file_crypt fc = {0};
	uint64_t size;
	int state = fileio_torn_state(&r->vk.geom, (uint64_t)st->st_size, &size), fixed;

	if (state == FILEIO_TORN) {
		fixed = r->cfg->repair && (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDWR;
		problem(r, plain, backing, fixed, "run 'kekfs fsck --repair' to trim it",
			"a crash cut its last write: %llu bytes after its last whole chunk are "
			"not a chunk, and the file reads as %llu bytes",
			(unsigned long long)((uint64_t)st->st_size -
					     geom_backing_size(&r->vk.geom, size)),
			(unsigned long long)size);
		return 0; /* its header and chunks are checked, and trimmed, as any file's */
	}
	if (state != FILEIO_BLANK)
		return 0;
	fixed = r->cfg->repair && fileio_load(fd, &r->vk, &fc) == 0 && fc.dek && fsync(fd) == 0;
	fileio_drop(&fc);
	problem(r, plain, backing, fixed, "run 'kekfs fsck --repair' to give it its header",
		"0 bytes on disk: a crash came between its creation (or a cut to 0) and its "
		"header; it opens as an empty file");
	return 1;
}

static void check_file(struct fsck_run *r, int dirfd, const char *name, const char *plain,
		       const char *backing)
{
	struct file_crypt fc = {0};
	struct stat st;
	int fd = open_file(r, dirfd, name), rc = 0;

	r->res->files++;
	if (fd < 0)
		problem(r, plain, backing, 0, "check its permissions", "cannot be opened: %s",
			strerror(errno));
	else if (fstat(fd, &st) != 0)
		problem(r, plain, backing, 0, RESTORE, "cannot be read: %s", strerror(errno));
	else if (seen_before(r, &st))
		; /* its header and chunks were checked under its first name */
	else if (crash_cut(r, fd, &st, plain, backing))
		; /* a 0-byte file, given its header on --repair: nothing more to check */
	else if (st.st_size < HEADER_LEN)
		problem(r, plain, backing, 0, RESTORE,
			"it is shorter than a kekfs header (%lld bytes): truncated",
			(long long)st.st_size);
	else if ((rc = fileio_load(fd, &r->vk, &fc)) == -EKEYREVOKED)
		check_shredded(r, dirfd, name, plain, backing);
	else if (rc == -EBADMSG)
		header_problem(r, plain, backing, fd, fc.hdr_err);
	else if (rc != 0)
		problem(r, plain, backing, 0, RESTORE, "cannot be read: %s", strerror(-rc));
	if (fd >= 0 && rc == 0 && fc.dek) {
		check_spare_slot(r, fd, &fc, plain, backing);
		check_chunks(r, fd, &fc, plain, backing);
	}
	fileio_drop(&fc);
	if (fd >= 0)
		close(fd);
	if (r->cfg->progress)
		r->cfg->progress(r->cfg->arg, r->res->files, r->total);
}

/* ---- names, directories, symlinks ---- */

/* The entry's plaintext name into out; -1 (reported) if it cannot be had. */
static int entry_name(struct fsck_run *r, const struct walk_entry *e, const struct fsck_dir *parent,
		      const char *backing, char *out)
{
	int n;

	if (!r->nk) {
		snprintf(out, NAME_PLAIN_MAX + 1, "%s", e->name);
		return 0;
	}
	if (!parent->id_ok)
		return -1; /* the directory's own problem says so */
	n = namedir_entry_plain(e->dirfd, r->nk, parent->id, e->name, out);
	if (n == -ENOLINK) {
		problem(r, NULL, backing, 0, RESTORE,
			"the side file .%s that holds its long name is missing or damaged",
			e->name);
		return -1;
	}
	if (n > 0)
		return 0;
	problem(r, NULL, backing, 0,
		"rename it back if it was moved in the backing directory, or " RESTORE,
		"its name does not decrypt (tampered, moved from another directory, or not "
		"written by kekfs)");
	return -1;
}

/* A directory a crash left under its temporary name; --repair removes it if it is empty. */
static void check_unnamed_dir(struct fsck_run *r, const struct walk_entry *e, const char *backing)
{
	int removed = r->cfg->repair && namedir_rmdir(e->dirfd, e->name) == 0;

	problem(r, NULL, backing, removed, "'kekfs fsck --repair' removes it if it is empty",
		"a directory whose creation a crash interrupted: it never got its name");
}

/* Entries kekfs keeps to itself: orphan long-name side files and unnamed directories. */
static void check_internal(struct fsck_run *r, const struct walk_entry *e,
			   const struct fsck_dir *parent, const char *backing)
{
	char name[NAME_PLAIN_MAX + 1], *plain = NULL;
	int removed = 0;

	if (e->type == DT_DIR &&
	    strncmp(e->name, NAME_TMPDIR_PREFIX, sizeof(NAME_TMPDIR_PREFIX) - 1) == 0)
		check_unnamed_dir(r, e, backing);
	if (e->type != DT_REG || !namedir_side_orphan(e->dirfd, e->name))
		return;
	/* It holds the entry's full encrypted name: say which name was lost. */
	if (parent->id_ok &&
	    namedir_entry_plain(e->dirfd, r->nk, parent->id, e->name + 1, name) > 0)
		plain = path_join(parent->plain, name);
	if (r->cfg->repair)
		removed = unlinkat(e->dirfd, e->name, 0) == 0;
	problem(r, plain, backing, removed, "'kekfs fsck --repair' removes it",
		"an orphan long-name side file: its entry is gone (left by a crash)");
	free(plain);
}

static int id_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* Notes the side object a long symlink target names, for orphan_check. */
static void link_ref_note(struct fsck_run *r, const char *ref)
{
	char *id = strdup(ref + 1);
	void *found = id ? tsearch(id, &r->link_refs, id_cmp) : NULL;

	if (!found || *(char **)found != id)
		free(id);
}

static void check_symlink(struct fsck_run *r, const struct walk_entry *e, const char *plain,
			  const char *backing)
{
	char enc[4096], out[4096];
	ssize_t n = readlinkat(e->dirfd, e->name, enc, sizeof(enc) - 1);
	int is_ref;

	r->res->symlinks++;
	if (n < 0) {
		problem(r, plain, backing, 0, RESTORE, "cannot be read: %s", strerror(errno));
		return;
	}
	enc[n] = '\0';
	is_ref = linkref_is(enc);
	if (is_ref)
		link_ref_note(r, enc);
	n = is_ref ? linktarget_load(r->cfg->backing_fd, r->cfg->vol->name_key, r->cfg->vol->id,
				     enc, out, sizeof(out))
		   : symlink_open(r->cfg->vol->name_key, r->cfg->vol->id, enc, out, sizeof(out));
	if (n < 0)
		problem(r, plain, backing, 0, "make the link again",
			is_ref ? "its long target's side object is missing, damaged or not the one "
				 "it names (tampered, or not written by kekfs)"
			       : "its target does not decrypt (tampered, or not written by kekfs)");
	secmem_wipe(out, sizeof(out));
}

/* A side object no symlink names: left by a crash between writing it and making the link. */
static int orphan_check(void *arg, int links_fd, const char *id)
{
	struct fsck_run *r = arg;
	char path[128];
	int removed = 0;

	if (tfind(id, &r->link_refs, id_cmp))
		return 0;
	if (r->cfg->repair)
		removed = unlinkat(links_fd, id, 0) == 0;
	snprintf(path, sizeof(path), "%s/%s/%s", VOLUME_DIR, LINKTARGET_DIR, id);
	problem(r, NULL, path, removed, "'kekfs fsck --repair' removes it",
		"a long symlink target that no symlink names (left by a crash)");
	return 0;
}

/* Room for directories down to depth n. */
static int dirs_reserve(struct fsck_run *r, size_t n)
{
	struct fsck_dir *d;

	if (n <= r->ndirs)
		return 0;
	d = realloc(r->dirs, n * 2 * sizeof(*d));
	if (!d)
		return -ENOMEM;
	memset(d + r->ndirs, 0, (n * 2 - r->ndirs) * sizeof(*d));
	r->dirs = d;
	r->ndirs = n * 2;
	return 0;
}

/* Makes the directory the one its entries see at the next depth; takes both paths. */
static void enter_dir(struct fsck_run *r, const struct walk_entry *e, char **plain, char **backing)
{
	struct fsck_dir *d = &r->dirs[e->depth + 1];
	int fd;

	r->res->dirs++;
	free(d->plain);
	free(d->backing);
	d->plain = *plain;
	d->backing = *backing;
	*plain = *backing = NULL;
	d->id_ok = 1;
	if (!r->nk)
		return;
	fd = openat(e->dirfd, e->name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	d->id_ok = fd >= 0 && namedir_read_id(fd, d->id) == 0;
	if (fd >= 0)
		close(fd);
	if (!d->id_ok)
		problem(r, d->plain, d->backing, 0,
			RESTORE "; the files inside are still checked, but not their names",
			"its directory id (" NAME_DIRID_FILE ") is missing or damaged: no name "
			"inside can be decrypted");
}

static int fsck_visit(void *ctx, const struct walk_entry *e)
{
	struct fsck_run *r = ctx;
	char name[NAME_PLAIN_MAX + 1], *plain = NULL, *backing;
	const struct fsck_dir *parent;
	int descend = 0;

	if (e->depth == 0 && strcmp(e->name, VOLUME_DIR) == 0)
		return 0;
	if (dirs_reserve(r, e->depth + 2) != 0)
		return 0;
	parent = &r->dirs[e->depth];
	backing = path_join(parent->backing, e->name);
	if (!backing)
		return 0;
	if (r->nk && name_is_internal(e->name)) {
		check_internal(r, e, parent, backing);
	} else {
		if (entry_name(r, e, parent, backing, name) == 0)
			plain = path_join(parent->plain, name);
		if (e->type == DT_REG) {
			check_file(r, e->dirfd, e->name, plain, backing);
		} else if (e->type == DT_LNK) {
			check_symlink(r, e, plain, backing);
		} else if (e->type == DT_DIR) {
			enter_dir(r, e, &plain, &backing);
			descend = 1;
		}
	}
	free(plain);
	free(backing);
	return descend;
}

static void count_file(void *ctx, int dirfd, const char *name)
{
	(void)dirfd;
	(void)name;
	((struct fsck_run *)ctx)->total++;
}

/* The root directory: its id is in the volume config. */
static int root_init(struct fsck_run *r)
{
	if (dirs_reserve(r, 2) != 0)
		return -ENOMEM;
	r->dirs[0].plain = strdup("");
	r->dirs[0].backing = strdup("");
	memcpy(r->dirs[0].id, r->cfg->vol->root_dir_id, NAME_DIRID_LEN);
	r->dirs[0].id_ok = 1;
	return r->dirs[0].plain && r->dirs[0].backing ? 0 : -ENOMEM;
}

int fsck_run(const struct fsck_config *cfg, struct fsck_result *res)
{
	struct fsck_run r = {.cfg = cfg, .res = res};
	int rc = 0;

	memset(res, 0, sizeof(*res));
	r.vk.vol = cfg->vol;
	r.vk.kr = cfg->kr;
	geom_init(&r.vk.geom, cfg->vol->cipher, cfg->vol->chunk_shift);
	if (cfg->vol->name_mode == NAMES_AES_SIV && !(r.nk = name_keys_new(cfg->vol->name_key)))
		rc = -ENOMEM;
	r.vk.nk = r.nk;
	r.buf = malloc(r.vk.geom.size);
	if (rc == 0 && (!r.buf || root_init(&r) != 0))
		rc = -ENOMEM;
	if (rc == 0) {
		check_volume_slots(&r);
		check_copies(&r);
		check_markers(&r);
		check_redata(&r);
		check_audit(&r);
		walk_regular_files(cfg->backing_fd, r.nk != NULL, NULL, count_file, &r);
		walk_tree(cfg->backing_fd, NULL, fsck_visit, &r);
		linktarget_each(cfg->backing_fd, orphan_check, &r);
	}
	for (size_t i = 0; i < r.ndirs; i++) {
		free(r.dirs[i].plain);
		free(r.dirs[i].backing);
	}
	free(r.dirs);
	tdestroy(r.links, free);
	tdestroy(r.link_refs, free);
	if (r.buf)
		secmem_wipe(r.buf, r.vk.geom.size);
	free(r.buf);
	name_keys_free(r.nk);
	return rc;
}
