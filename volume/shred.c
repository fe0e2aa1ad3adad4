#include "shred.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "../crypto/secmem.h"
#include "../format/namedir.h"
#include "../keyring/hoststate.h"
#include "census.h"
#include "fileio.h"
#include "journal_mac.h"
#include "log.h"
#include "walk.h"

#define SHRED_PROBLEMS_SHOWN 10

struct shred {
	struct shred_config cfg;
	struct name_keys *nk; /* NULL on plaintext-name volumes */
	struct stat root_st;  /* to know the root directory (its id is in the config) */
	/* the seal running in the background, if any */
	pthread_mutex_t lock;
	pthread_t thread;
	int have_thread;
	atomic_int stop; /* asks a seal waiting on its re-wrap to give up */
	char seal_state[512];
};

/* What one shred_path call did, for its report. */
struct shred_run {
	struct shred *s;
	const struct audit_actor *actor;
	FILE *out;
	uint64_t files, dirs, problems;
};

struct shred *shred_new(const struct shred_config *cfg)
{
	struct shred *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->cfg = *cfg;
	if (cfg->vol->name_mode == NAMES_AES_SIV && !(s->nk = name_keys_new(cfg->vol->name_key))) {
		free(s);
		return NULL;
	}
	fstat(cfg->backing_fd, &s->root_st);
	pthread_mutex_init(&s->lock, NULL);
	return s;
}

static void seal_join(struct shred *s)
{
	if (s->have_thread) {
		pthread_join(s->thread, NULL);
		s->have_thread = 0;
	}
}

void shred_free(struct shred *s)
{
	if (!s)
		return;
	s->stop = 1;
	seal_join(s);
	name_keys_free(s->nk);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* ---- names ---- */

/* The directory id names in dirfd are encrypted with (the root's is in the config). */
static int dir_id_of(struct shred *s, int dirfd, uint8_t id[NAME_DIRID_LEN])
{
	struct stat st;

	if (fstat(dirfd, &st) == 0 && st.st_dev == s->root_st.st_dev &&
	    st.st_ino == s->root_st.st_ino) {
		memcpy(id, s->cfg.vol->root_dir_id, NAME_DIRID_LEN);
		return 0;
	}
	return namedir_read_id(dirfd, id);
}

/* The plaintext name of backing entry bname of dirfd into out (NAME_PLAIN_MAX + 1). */
static int plain_name(struct shred *s, int dirfd, const char *bname, char *out)
{
	uint8_t id[NAME_DIRID_LEN];
	int rc;

	if (!s->nk) {
		snprintf(out, NAME_PLAIN_MAX + 1, "%s", bname);
		return 0;
	}
	rc = dir_id_of(s, dirfd, id);
	if (rc == 0)
		rc = namedir_entry_plain(dirfd, s->nk, id, bname, out);
	return rc == -ENOLINK ? -EIO : rc < 0 ? rc : 0;
}

/* The kernel forgets entry plain of the directory dirfd (its dentry cache would show it). */
static void forget_entry(struct shred *s, int dirfd, const char *plain)
{
	struct kinode *parent = NULL;
	struct stat st;
	int pfd;

	if (!s->cfg.inodes || !s->cfg.invalidate || !plain)
		return;
	pfd = openat(dirfd, ".", O_PATH | O_CLOEXEC);
	if (pfd >= 0 && fstat(pfd, &st) == 0)
		parent = inode_table_get(s->cfg.inodes, pfd, &st);
	else if (pfd >= 0)
		close(pfd);
	if (parent) {
		s->cfg.invalidate(s->cfg.invalidate_arg, parent, plain, NULL);
		inode_table_forget(s->cfg.inodes, parent, 1);
	}
}

/* Removes one backing name (and a long name's side file); the kernel forgets the entry. */
static int remove_name(struct shred *s, int dirfd, const char *bname, const char *plain)
{
	char side[NAME_ENC_SIZE + 2];

	if (unlinkat(dirfd, bname, 0) != 0)
		return -errno;
	if (s->nk && name_is_long(bname)) {
		snprintf(side, sizeof(side), ".%s", bname);
		unlinkat(dirfd, side, 0);
	}
	forget_entry(s, dirfd, plain);
	return 0;
}

/* ---- one file ---- */

/* The path, as the audit log may hold it: keyed BLAKE2b, hex (33 bytes). */
static void path_hash(struct shred *s, const char *rel, char hex[33])
{
	uint8_t key[32], h[16];

	keyring_subkey(s->cfg.kr, KDF_LABEL_SHRED_PATH_HASH, key);
	crypto_generichash(h, sizeof(h), (const uint8_t *)rel, strlen(rel), key, sizeof(key));
	sodium_memzero(key, sizeof(key));
	sodium_bin2hex(hex, 33, h, sizeof(h));
}

static void shred_audit(struct shred_run *r, const char *rel, const uint8_t id[FILE_ID_LEN],
			uint32_t kek, unsigned links, unsigned removed)
{
	struct audit_event ev = {.op = "shred", .kek = kek};
	char idhex[2 * FILE_ID_LEN + 1], ph[33], detail[128];

	sodium_bin2hex(idhex, sizeof(idhex), id, FILE_ID_LEN);
	path_hash(r->s, rel, ph);
	snprintf(detail, sizeof(detail), "file %s path %s links %u removed %u", idhex, ph, links,
		 removed);
	ev.detail = detail;
	ev.result = removed == links ? "ok" : "names left";
	ev.uid = r->actor->uid;
	ev.pid = r->actor->pid;
	if (audit_append(r->s->cfg.audit_dir, r->s->cfg.kr, &ev) != 0)
		log_msg(LOG_ERR, "shred: cannot append to the audit log in %s",
			r->s->cfg.audit_dir);
}

/* Wipes the header on disk, then the DEK in memory: open handles fail from now on. */
static int wipe_header(struct shred *s, struct kinode *ino, int fd, uint8_t id[FILE_ID_LEN],
		       uint32_t *kek)
{
	int rc;

	if (ino)
		pthread_rwlock_wrlock(&ino->lock);
	rc = fileio_shred(fd, id, kek);
	if (ino && rc == 0) {
		fileio_drop(&ino->fc);
		ino->fc.shredded = 1;
	}
	if (ino)
		pthread_rwlock_unlock(&ino->lock);
	if (ino && rc == 0 && s->cfg.invalidate)
		s->cfg.invalidate(s->cfg.invalidate_arg, NULL, NULL, ino);
	return rc;
}

/* Other names of a hard-linked file, found by walking the backing tree. */
struct link_hunt {
	struct shred *s;
	dev_t dev;
	ino_t ino;
	unsigned removed;
};

static void hunt_link(void *ctx, int dirfd, const char *name)
{
	struct link_hunt *h = ctx;
	char plain[NAME_PLAIN_MAX + 1];
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_dev != h->dev ||
	    st.st_ino != h->ino)
		return;
	if (remove_name(h->s, dirfd, name,
			plain_name(h->s, dirfd, name, plain) == 0 ? plain : NULL) == 0)
		h->removed++;
}

/* Removes every name of the file kekfs can find; returns how many it removed. */
static unsigned remove_all_names(struct shred *s, int dirfd, const char *bname, const char *plain,
				 const struct stat *st)
{
	struct link_hunt h = {.s = s, .dev = st->st_dev, .ino = st->st_ino};

	if (remove_name(s, dirfd, bname, plain) == 0)
		h.removed++;
	if (st->st_nlink > 1)
		walk_regular_files(s->cfg.backing_fd, s->nk != NULL, NULL, hunt_link, &h);
	return h.removed;
}

static void report_problem(struct shred_run *r, const char *rel, const char *what)
{
	if (r->problems++ < SHRED_PROBLEMS_SHOWN)
		fprintf(r->out, "%s: %s\n", rel, what);
	log_msg(LOG_ERR, "shred: an entry could not be shredded: %s", what); /* no path: private */
}

/* Shreds regular file bname of dirfd (plaintext path rel, name plain). 0 or -errno. */
static int shred_file(struct shred_run *r, int dirfd, const char *bname, const char *plain,
		      const char *rel)
{
	struct shred *s = r->s;
	struct kinode *ino = NULL;
	struct stat st, now;
	uint8_t id[FILE_ID_LEN];
	uint32_t kek = 0;
	unsigned removed, left;
	int pfd = openat(dirfd, bname, O_PATH | O_NOFOLLOW | O_CLOEXEC), fd, rc;

	if (pfd < 0 || fstat(pfd, &st) != 0 || !S_ISREG(st.st_mode)) {
		rc = pfd < 0 ? -errno : -EINVAL;
		if (pfd >= 0)
			close(pfd);
		return rc;
	}
	ino = inode_table_hold(s->cfg.inodes, pfd, &st);
	fd = openat(dirfd, bname, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	rc = fd < 0 ? -errno : 0;
	if (rc == 0 && (fstat(fd, &now) != 0 || now.st_ino != st.st_ino))
		rc = -EAGAIN; /* replaced under us */
	if (rc == 0)
		rc = wipe_header(s, ino, fd, id, &kek);
	if (rc == 0) {
		removed = remove_all_names(s, dirfd, bname, plain, &st);
		left = fstat(fd, &now) == 0 ? (unsigned)now.st_nlink : 0;
		if (left == 0 && s->cfg.inodes)
			inode_table_unlinked(s->cfg.inodes, st.st_dev, st.st_ino);
		shred_audit(r, rel, id, kek, (unsigned)st.st_nlink, removed);
		r->files++;
		if (st.st_nlink > 1 || left)
			fprintf(r->out,
				"%s: %u links, %u names removed, %u left outside what kekfs can "
				"reach (they read as EKEYREVOKED)\n",
				rel, (unsigned)st.st_nlink, removed, left);
	}
	if (fd >= 0)
		close(fd);
	inode_table_release(s->cfg.inodes, ino);
	return rc;
}

/* ---- trees ---- */

static int shred_entry(struct shred_run *r, int dirfd, const char *bname, const char *rel);

/* The names of a directory, read before any is removed. NULL-terminated; NULL: ENOMEM. */
static char **dir_names(int dirfd, int is_root, int encrypted)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	char **v = calloc(1, sizeof(*v)), **nv;
	size_t n = 0;

	if (!d || !v) {
		if (fd >= 0 && !d)
			close(fd);
		if (d)
			closedir(d);
		return v;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		    (encrypted && name_is_internal(de->d_name)) ||
		    (is_root && strcmp(de->d_name, VOLUME_DIR) == 0))
			continue;
		nv = realloc(v, (n + 2) * sizeof(*v));
		if (!nv)
			break;
		v = nv;
		v[n++] = strdup(de->d_name);
		v[n] = NULL;
	}
	closedir(d);
	return v;
}

/* Removes an emptied directory (with its id, and its long name's side file). */
static int remove_dir(struct shred *s, int dirfd, const char *bname, const char *plain)
{
	char side[NAME_ENC_SIZE + 2];
	int rc = s->nk ? namedir_rmdir(dirfd, bname)
		       : (unlinkat(dirfd, bname, AT_REMOVEDIR) == 0 ? 0 : -errno);

	if (rc == 0 && s->nk && name_is_long(bname)) {
		snprintf(side, sizeof(side), ".%s", bname);
		unlinkat(dirfd, side, 0);
	}
	if (rc == 0)
		forget_entry(s, dirfd, plain);
	return rc;
}

/* Shreds every entry of directory bname of dirfd, then removes it. */
static int shred_dir(struct shred_run *r, int dirfd, const char *bname, const char *rel,
		     const char *plain)
{
	int sub = openat(dirfd, bname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), rc = 0;
	char **names = sub >= 0 ? dir_names(sub, 0, r->s->nk != NULL) : NULL;

	if (sub < 0)
		return -errno;
	for (size_t i = 0; names && names[i]; i++) {
		if (shred_entry(r, sub, names[i], rel) != 0)
			rc = -ENOTEMPTY;
		free(names[i]);
	}
	free(names);
	close(sub);
	if (rc == 0)
		rc = remove_dir(r->s, dirfd, bname, plain);
	if (rc == 0)
		r->dirs++;
	return rc;
}

/* One entry of a tree being shredded: files shredded, directories recursed, others removed. */
static int shred_entry(struct shred_run *r, int dirfd, const char *bname, const char *parent_rel)
{
	char plain[NAME_PLAIN_MAX + 1], rel[PATH_MAX];
	struct stat st;
	int rc;

	if (plain_name(r->s, dirfd, bname, plain) != 0)
		snprintf(plain, sizeof(plain), "%s", bname); /* undecryptable: still shredded */
	snprintf(rel, sizeof(rel), "%s/%s", parent_rel, plain);
	if (fstatat(dirfd, bname, &st, AT_SYMLINK_NOFOLLOW) != 0)
		rc = errno == ENOENT ? 0 : -errno; /* a hard link removed with an earlier name */
	else if (S_ISDIR(st.st_mode))
		rc = shred_dir(r, dirfd, bname, rel, plain);
	else if (S_ISREG(st.st_mode))
		rc = shred_file(r, dirfd, bname, plain, rel);
	else
		rc = remove_name(r->s, dirfd, bname, plain);
	if (rc != 0)
		report_problem(r, rel, strerror(-rc));
	return rc;
}

/* ---- entry points ---- */

/* Refuses what is not a path to something inside the volume. */
static int path_check(struct shred *s, const char *rel, char *err, size_t err_size)
{
	size_t n = strlen(rel);

	if (n == 0 || strcmp(rel, ".") == 0) {
		snprintf(err, err_size, "refusing to shred the root of the volume");
		return -EINVAL;
	}
	if (!s->nk && strncmp(rel, VOLUME_DIR, strlen(VOLUME_DIR)) == 0 &&
	    (rel[strlen(VOLUME_DIR)] == '\0' || rel[strlen(VOLUME_DIR)] == '/')) {
		snprintf(err, err_size, "%s: kekfs's own directory, not part of the volume", rel);
		return -EPERM;
	}
	return 0;
}

static int shred_target(struct shred_run *r, int dirfd, const char *bname, const char *rel,
			int recursive, char *err, size_t err_size)
{
	const char *plain = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;
	struct stat st;
	int rc;

	if (fstatat(dirfd, bname, &st, AT_SYMLINK_NOFOLLOW) != 0)
		rc = -errno;
	else if (S_ISDIR(st.st_mode) && !recursive)
		rc = -EISDIR;
	else if (S_ISDIR(st.st_mode))
		rc = shred_dir(r, dirfd, bname, rel, plain);
	else if (!S_ISREG(st.st_mode))
		rc = -EINVAL;
	else
		rc = shred_file(r, dirfd, bname, plain, rel);
	if (rc == -EISDIR)
		snprintf(err, err_size, "%s: is a directory (use -r to shred a tree)", rel);
	else if (rc == -EINVAL)
		snprintf(err, err_size, "%s: not a regular file: there is no key to shred", rel);
	else if (rc != 0)
		snprintf(err, err_size, "%s: %s", rel,
			 rc == -EBADMSG ? "not a kekfs file (bad header)" : strerror(-rc));
	return rc;
}

int shred_path(struct shred *s, const char *rel, int recursive, const struct audit_actor *actor,
	       FILE *out, char *err, size_t err_size)
{
	struct shred_run r = {.s = s, .actor = actor, .out = out};
	char bpath[PATH_MAX];
	const char *last;
	int rc = path_check(s, rel, err, err_size), dirfd;

	if (rc != 0)
		return rc;
	rc = namepath_encrypt(s->cfg.backing_fd, s->nk, s->cfg.vol->root_dir_id, rel, bpath,
			      sizeof(bpath));
	if (rc != 0) {
		snprintf(err, err_size, "%s: %s", rel,
			 rc == -EINVAL ? "not a path inside the volume" : strerror(-rc));
		return rc;
	}
	dirfd = namepath_open_parent(s->cfg.backing_fd, bpath, &last);
	if (dirfd < 0) {
		snprintf(err, err_size, "%s: %s", rel, strerror(-dirfd));
		return dirfd;
	}
	rc = shred_target(&r, dirfd, last, rel, recursive, err, err_size);
	close(dirfd);
	if (rc == 0 && r.problems)
		rc = -EIO, snprintf(err, err_size, "%s: %llu entries could not be shredded", rel,
				    (unsigned long long)r.problems);
	fprintf(out, "shredded %llu file%s%s", (unsigned long long)r.files, r.files == 1 ? "" : "s",
		r.dirs ? "" : "\n");
	if (r.dirs)
		fprintf(out, " and removed %llu director%s\n", (unsigned long long)r.dirs,
			r.dirs == 1 ? "y" : "ies");
	log_msg(LOG_NOTICE, "shred: %llu files shredded (path hashed in the audit log)",
		(unsigned long long)r.files);
	return rc;
}

/* ---- verify a copy ---- */

int shred_verify_header(const struct volume *vol, const struct keyring *kr,
			const uint8_t hdr[HEADER_LEN], char *msg, size_t msg_size)
{
	struct file_header h;
	uint8_t *dek = secmem_alloc(DEK_LEN);
	uint32_t v = 0;
	int err = dek ? header_decode(hdr, vol, &h) : HDR_ERR_FORMAT;

	if (err == HDR_OK)
		err = header_open_dek(&h, vol, kr, dek);
	secmem_free(dek);
	header_current_version(hdr, &v);
	if (err == HDR_OK)
		snprintf(msg, msg_size,
			 "CAN be opened: its key is wrapped by KEK v%u, which this "
			 "keyring holds",
			 h.cur.kek_version);
	else if (err == HDR_ERR_SHREDDED)
		snprintf(msg, msg_size, "cannot be opened: both wrap slots were wiped by a shred");
	else if (err == HDR_ERR_KEK_DESTROYED)
		snprintf(msg, msg_size,
			 "cannot be opened: its key is wrapped by KEK v%u, %s in "
			 "this keyring",
			 v, kek_state_name(keyring_kek_state(kr, v)));
	else
		snprintf(msg, msg_size, "cannot be opened: %s", header_strerror(err));
	return err == HDR_OK;
}

/* ---- seal ---- */

/* Where the keyring is, and what opens it, decide who may hold an old copy of it. */
void seal_guarantee_print(const struct shred *s, FILE *out)
{
	const struct keyring *kr = s->cfg.kr;
	size_t n = strlen(s->cfg.audit_dir);
	int inside =
	    strncmp(s->cfg.keyring_path, s->cfg.audit_dir, n) == 0 && s->cfg.keyring_path[n] == '/';
	int token = 1;
	char dir[PATH_MAX] = HOSTSTATE_ROOT_DIR;

	for (size_t i = 0; i < keyring_slot_count(kr); i++)
		token &= keyring_slot_type(kr, i) == KR_SECRET_PKCS11;
	hoststate_dir(dir, sizeof(dir));
	fputs("Guarantee: no copy of a shredded file made before its shred (a backup, a snapshot) "
	      "can\nbe opened with this keyring, nor with any copy of the keyring made after this "
	      "seal:\nevery KEK version that ever wrapped its key is destroyed.\n"
	      "Condition: copies of the keyring made BEFORE this seal still hold those KEKs and "
	      "must be\ndestroyed too.\n",
	      out);
	if (inside)
		fputs("The keyring is inside the backing directory (.kekfs/keyring): every backup, "
		      "snapshot or\nsync copy of the backing directory made before this seal "
		      "carries such a copy, and with\nthe passphrase or key file it opens the "
		      "shredded files' old copies. Keeping the keyring\noutside the backing "
		      "directory (--keyring) keeps backups of data and of keys apart.\n",
		      out);
	else
		fprintf(
		    out,
		    "The keyring is kept outside the backing directory (%s):\nbackups of "
		    "the backing directory do not carry it; copies of that file made before this "
		    "seal do.\n",
		    s->cfg.keyring_path);
	if (token)
		fputs("Every unlock slot is a key in a PKCS#11 token: an old copy of the keyring "
		      "opens only\nwith that token and its PIN, so the seal holds against anyone "
		      "without the token, not\nagainst whoever holds it.\n",
		      out);
	fprintf(
	    out,
	    "This host recorded keyring generation %llu in %s and refuses an older keyring\n"
	    "unless --allow-rollback is given; another host, or this one once that state is "
	    "lost,\ncannot tell an old copy of the keyring from the current one. The media that "
	    "held the old\nkeyring file may keep its old blocks until overwritten.\n",
	    (unsigned long long)keyring_generation(kr), dir);
}

enum marker_state seal_marker_state(int backing_fd, const struct volume *vol,
				    const struct keyring *kr)
{
	uint32_t set_on = 0;
	enum marker_state m = marker_check(backing_fd, vol, kr, SEAL_MARKER, &set_on);

	/* set once the seal's rotation is done: one from before a later rotation is replayed */
	if (m == MARKER_AUTHENTIC && set_on != keyring_active_version(kr))
		m = MARKER_UNAUTHENTICATED;
	return m;
}

int seal_pending(struct shred *s)
{
	return seal_marker_state(s->cfg.backing_fd, s->cfg.vol, s->cfg.kr) == MARKER_AUTHENTIC;
}

/* Destroys KEK version v if it is not yet; appends what happened to msg. */
static int destroy_old(struct shred *s, const struct audit_actor *actor, uint32_t v, char *msg,
		       size_t msg_size)
{
	char one[2048];
	size_t used = strlen(msg);

	if (census_change_kek(s->cfg.backing_fd, s->cfg.vol, s->cfg.kr, s->cfg.keyring_path,
			      s->cfg.audit_dir, actor, v, KEK_DESTROY_NOW, 0, 0, one,
			      sizeof(one)) != 0) {
		snprintf(msg + used, msg_size - used, "KEK v%u: %s", v, one);
		return -1;
	}
	snprintf(msg + used, msg_size - used, "%sv%u", used ? ", " : "destroyed KEK ", v);
	return 0;
}

int seal_finish(struct shred *s, const struct audit_actor *actor, char *msg, size_t msg_size)
{
	uint32_t active = keyring_active_version(s->cfg.kr);
	struct audit_event ev = {.op = "seal", .kek = active};
	struct kek_info k;
	int rc = 0;

	msg[0] = '\0';
	if (rotation_pending(s->cfg.backing_fd)) {
		snprintf(msg, msg_size, "the re-wrap is unfinished (see the log): old KEKs kept");
		return -1;
	}
	for (size_t i = 0; rc == 0 && i < keyring_kek_count(s->cfg.kr); i++) {
		keyring_kek_info(s->cfg.kr, i, &k);
		if (k.version != active && k.state != KEK_DESTROYED)
			rc = destroy_old(s, actor, k.version, msg, msg_size);
	}
	if (rc == 0 && !msg[0])
		snprintf(msg, msg_size, "no older KEK left to destroy");
	if (rc == 0)
		rc = volume_marker_clear(s->cfg.backing_fd, SEAL_MARKER) == 0 ? 0 : -1;
	ev.detail = rc == 0 ? "older KEKs destroyed" : "unfinished";
	ev.result = rc == 0 ? "ok" : "failed";
	ev.uid = actor->uid;
	ev.pid = actor->pid;
	audit_append(s->cfg.audit_dir, s->cfg.kr, &ev);
	return rc;
}

static void seal_set_state(struct shred *s, const char *state)
{
	pthread_mutex_lock(&s->lock);
	snprintf(s->seal_state, sizeof(s->seal_state), "%s", state);
	pthread_mutex_unlock(&s->lock);
}

/* Waits for the re-wrap (polling its status: the rotation owns its thread), then finishes. */
static void *seal_thread(void *arg)
{
	struct shred *s = arg;
	const struct timespec tick = {0, 50 * 1000 * 1000};
	struct audit_actor self = {getuid(), getpid()};
	struct rotation_status st;
	char msg[400], line[512];

	for (rotation_get_status(s->cfg.rot, &st); st.running && !s->stop;
	     rotation_get_status(s->cfg.rot, &st))
		nanosleep(&tick, NULL);
	if (s->stop)
		return NULL;
	if (seal_finish(s, &self, msg, sizeof(msg)) == 0)
		snprintf(line, sizeof(line), "seal: finished on KEK v%u: %s",
			 keyring_active_version(s->cfg.kr), msg);
	else
		snprintf(line, sizeof(line), "seal: failed: %s; it resumes at the next mount", msg);
	log_msg(LOG_NOTICE, "%s", line);
	seal_set_state(s, line);
	return NULL;
}

static int seal_spawn(struct shred *s)
{
	seal_join(s);
	s->stop = 0;
	seal_set_state(s, "seal: running");
	if (pthread_create(&s->thread, NULL, seal_thread, s) != 0)
		return -EAGAIN;
	s->have_thread = 1;
	return 0;
}

int seal_running(struct shred *s)
{
	int running;

	pthread_mutex_lock(&s->lock);
	running = strcmp(s->seal_state, "seal: running") == 0;
	pthread_mutex_unlock(&s->lock);
	return running;
}

int seal_start(struct shred *s, const struct audit_actor *actor, uint32_t *version)
{
	int rc;

	if (!s->cfg.rot)
		return -EROFS;
	if (seal_running(s))
		return -EBUSY;
	/* after the rotation: the marker names the KEK it made active (a replay cannot match) */
	rc = rotation_start(s->cfg.rot, 1, actor, NULL, version);
	if (rc == 0)
		rc = marker_write(s->cfg.backing_fd, s->cfg.vol, s->cfg.kr, SEAL_MARKER);
	return rc == 0 ? seal_spawn(s) : rc;
}

int seal_resume(struct shred *s)
{
	enum marker_state m = seal_marker_state(s->cfg.backing_fd, s->cfg.vol, s->cfg.kr);

	if (m == MARKER_UNAUTHENTICATED)
		log_msg(LOG_ERR,
			"seal: .kekfs/%s is not authenticated or is stale (forged, replayed, "
			"or left by kekfs 0daec58 or older): ignored, no KEK destroyed; see "
			"'kekfs fsck'",
			SEAL_MARKER);
	if (!s->cfg.rot || m != MARKER_AUTHENTIC)
		return 0;
	log_msg(LOG_NOTICE, "seal: resuming an unfinished seal");
	rotation_resume(s->cfg.rot);
	return seal_spawn(s);
}

void seal_status(struct shred *s, FILE *out)
{
	struct rotation_status st;
	char state[sizeof(s->seal_state)];

	pthread_mutex_lock(&s->lock);
	memcpy(state, s->seal_state, sizeof(state));
	pthread_mutex_unlock(&s->lock);
	if (!state[0])
		fputs("seal: none since mount\n", out);
	else if (strcmp(state, "seal: running") != 0)
		fprintf(out, "%s\n", state);
	if (strncmp(state, "seal: finished", 14) == 0)
		seal_guarantee_print(s, out);
	if (strcmp(state, "seal: running") != 0)
		return;
	rotation_get_status(s->cfg.rot, &st);
	fprintf(out, "seal: running: re-wrap to KEK v%u: %llu of %llu files\n", st.target,
		(unsigned long long)st.done, (unsigned long long)st.total);
}

int seal_wait(struct shred *s, char *msg, size_t msg_size)
{
	seal_join(s);
	snprintf(msg, msg_size, "%s", s->seal_state);
	return strncmp(s->seal_state, "seal: finished", 14) == 0 ? 0 : -1;
}
