#include "rotation.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "journal_mac.h"
#include "log.h"
#include "walk.h"

#define REWRAP_PROGRESS_EVERY 60.0 /* seconds between audit records of a long re-wrap */

struct rotation {
	struct rotation_config cfg;
	pthread_mutex_t lock; /* status fields and thread state */
	struct rotation_status st;
	struct timespec started;
	double progress_logged; /* seconds into the walk of the last progress record */
	pthread_t thread;
	int have_thread;
	atomic_int stop; /* asks the walk to end: rotation_free, a new rotation */
};

static double seconds_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static void walk_volume(struct rotation *r, walk_fn fn)
{
	walk_regular_files(r->cfg.backing_fd, r->cfg.vol->name_mode == NAMES_AES_SIV, &r->stop, fn,
			   r);
}

static void count_file(void *ctx, int dirfd, const char *name)
{
	struct rotation *r = ctx;

	(void)dirfd;
	(void)name;
	pthread_mutex_lock(&r->lock);
	r->st.total++;
	pthread_mutex_unlock(&r->lock);
}

/* Re-wraps one header through a read-write fd of the same inode as st. */
static int rewrap_at(struct rotation *r, int dirfd, const char *name, const struct stat *st,
		     int *hdr_err)
{
	struct volume_keys vk = {.vol = r->cfg.vol, .kr = r->cfg.kr};
	struct stat now;
	int fd = openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_NOATIME | O_CLOEXEC), rc;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &now) != 0 || now.st_ino != st->st_ino || now.st_dev != st->st_dev)
		rc = 0; /* renamed or replaced since: whoever made it used the active KEK */
	else if (now.st_size < HEADER_LEN)
		rc = 0; /* being created: its header will be written with the active KEK */
	else
		rc = fileio_rewrap(fd, &vk, 0, hdr_err);
	close(fd);
	return rc;
}

/* Names the backing file (never a key) so a person can find and check it. */
static void log_rewrap_failure(int dirfd, const char *name, const char *why)
{
	char proc[64], dir[PATH_MAX];
	ssize_t n;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", dirfd);
	n = readlink(proc, dir, sizeof(dir) - 1);
	dir[n > 0 ? n : 0] = '\0';
	log_msg(LOG_ERR, "re-wrap: %s/%s: %s; the file keeps its old wrap", dir, name, why);
}

/* One audit record of this rotation's; a log that cannot be written is logged, not fatal. */
static void rotation_audit(struct rotation *r, const struct audit_actor *actor, const char *op,
			   uint32_t kek, const char *detail, const char *result)
{
	struct audit_event ev = {.op = op, .kek = kek, .detail = detail, .result = result};

	if (actor) {
		ev.uid = actor->uid;
		ev.pid = actor->pid;
	} else {
		audit_event_self(&ev);
	}
	if (r->cfg.audit_dir && audit_append(r->cfg.audit_dir, r->cfg.kr, &ev) != 0)
		log_msg(LOG_ERR, "cannot append to the audit log in %s", r->cfg.audit_dir);
}

/* An audit record of how far a long re-wrap got, once a minute (the walker's thread). */
static void rewrap_progress(struct rotation *r)
{
	double t = seconds_since(&r->started);
	char detail[96];

	if (t - r->progress_logged < REWRAP_PROGRESS_EVERY)
		return;
	r->progress_logged = t;
	pthread_mutex_lock(&r->lock);
	snprintf(detail, sizeof(detail), "%llu of %llu files, %llu failed",
		 (unsigned long long)r->st.done, (unsigned long long)r->st.total,
		 (unsigned long long)r->st.failed);
	pthread_mutex_unlock(&r->lock);
	rotation_audit(r, NULL, "rewrap-progress", r->st.target, detail, "ok");
}

/*
 * Re-wraps one file. Mounted, it holds the file's inode lock for the header's sake only:
 * readers and writers of other files, and of this one's chunks before and after, go on.
 */
static void rewrap_file(void *ctx, int dirfd, const char *name)
{
	struct rotation *r = ctx;
	struct kinode *ino = NULL;
	struct stat st;
	int hdr_err = HDR_OK, rc;
	int pfd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);

	if (pfd < 0 || fstat(pfd, &st) != 0 || !S_ISREG(st.st_mode)) {
		rc = 0;
		if (pfd >= 0)
			close(pfd);
	} else {
		ino = inode_table_hold(r->cfg.inodes, pfd, &st);
		if (ino)
			pthread_rwlock_wrlock(&ino->lock);
		rc = rewrap_at(r, dirfd, name, &st, &hdr_err);
		if (ino)
			pthread_rwlock_unlock(&ino->lock);
		inode_table_release(r->cfg.inodes, ino);
	}
	if (rc < 0)
		log_rewrap_failure(dirfd, name,
				   rc == -EBADMSG ? header_strerror(hdr_err) : strerror(-rc));
	pthread_mutex_lock(&r->lock);
	r->st.done++;
	r->st.rewrapped += rc == 1;
	r->st.failed += rc < 0;
	pthread_mutex_unlock(&r->lock);
	rewrap_progress(r);
}

int rotation_pending(int backing_fd)
{
	return volume_marker_present(backing_fd, REWRAP_MARKER);
}

/* The walk: count, re-wrap every header, then the name key, sync, and clear the marker. */
static void *rewrap_thread(void *arg)
{
	struct rotation *r = arg;
	int name_rc, sync_fd;

	char detail[96];

	log_msg(LOG_INFO, "re-wrap to KEK v%u started", r->st.target);
	walk_volume(r, count_file);
	snprintf(detail, sizeof(detail), "%llu files", (unsigned long long)r->st.total);
	if (!r->stop)
		rotation_audit(r, NULL, "rewrap-start", r->st.target, detail, "ok");
	walk_volume(r, rewrap_file);
	name_rc = r->stop ? 0 : volume_rewrap(r->cfg.vol, r->cfg.kr, r->cfg.volume_path);
	sync_fd = openat(r->cfg.backing_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sync_fd >= 0) {
		syncfs(sync_fd);
		close(sync_fd);
	}
	pthread_mutex_lock(&r->lock);
	r->st.name_key_done = name_rc >= 0;
	r->st.running = 0;
	r->st.elapsed = seconds_since(&r->started);
	pthread_mutex_unlock(&r->lock);
	if (!r->stop && name_rc >= 0 && r->st.failed == 0)
		volume_marker_clear(r->cfg.backing_fd, REWRAP_MARKER);
	if (!r->stop) {
		snprintf(detail, sizeof(detail), "%llu files, %llu re-wrapped, %llu failed",
			 (unsigned long long)r->st.done, (unsigned long long)r->st.rewrapped,
			 (unsigned long long)r->st.failed);
		rotation_audit(r, NULL, "rewrap-done", r->st.target, detail,
			       r->st.failed || name_rc < 0 ? "incomplete" : "ok");
	}
	log_msg(r->st.failed || name_rc < 0 ? LOG_ERR : LOG_INFO,
		"re-wrap to KEK v%u %s: %llu files, %llu re-wrapped, %llu failed, %.1f s",
		r->st.target, r->stop ? "stopped" : "finished", (unsigned long long)r->st.done,
		(unsigned long long)r->st.rewrapped, (unsigned long long)r->st.failed,
		r->st.elapsed);
	return NULL;
}

/* Joins the previous walk, if any; the caller holds no lock. */
static void rotation_join(struct rotation *r)
{
	if (r->have_thread) {
		pthread_join(r->thread, NULL);
		r->have_thread = 0;
	}
}

static int walk_start(struct rotation *r)
{
	memset(&r->st, 0, sizeof(r->st));
	r->st.running = 1;
	r->st.target = keyring_active_version(r->cfg.kr);
	r->stop = 0;
	r->progress_logged = 0;
	clock_gettime(CLOCK_MONOTONIC, &r->started);
	if (pthread_create(&r->thread, NULL, rewrap_thread, r) != 0) {
		r->st.running = 0;
		return -EAGAIN;
	}
	r->have_thread = 1;
	return 0;
}

struct rotation *rotation_new(const struct rotation_config *cfg)
{
	struct rotation *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->cfg = *cfg;
	pthread_mutex_init(&r->lock, NULL);
	return r;
}

int rotation_start(struct rotation *r, int force, const struct audit_actor *actor,
		   const uint8_t *material, uint32_t *version)
{
	int rc;

	pthread_mutex_lock(&r->lock);
	if (r->st.running && !force) {
		pthread_mutex_unlock(&r->lock);
		return -EBUSY;
	}
	r->stop = 1;
	pthread_mutex_unlock(&r->lock);
	rotation_join(r);
	rc = marker_write(r->cfg.backing_fd, r->cfg.vol, r->cfg.kr, REWRAP_MARKER);
	if (rc == 0 && keyring_rotate(r->cfg.kr, r->cfg.keyring_path, material, version) != KR_OK)
		rc = errno ? -errno : -EIO;
	if (rc == 0 &&
	    volume_record_generation(r->cfg.vol, r->cfg.kr, r->cfg.volume_path) != VOL_OK)
		log_msg(LOG_ERR, "cannot record the keyring generation in %s", r->cfg.volume_path);
	if (rc == 0) {
		char check[KEK_CHECK_HEX], detail[64];

		keyring_kek_check_hex(r->cfg.kr, *version, check);
		snprintf(detail, sizeof(detail), "check %s%s", check, force ? ", forced" : "");
		rotation_audit(r, actor, material ? "import" : "rotate", *version, detail, "ok");
	}
	pthread_mutex_lock(&r->lock);
	if (rc == 0)
		rc = walk_start(r);
	pthread_mutex_unlock(&r->lock);
	return rc;
}

int rotation_resume(struct rotation *r)
{
	enum marker_state m =
	    marker_check(r->cfg.backing_fd, r->cfg.vol, r->cfg.kr, REWRAP_MARKER, NULL);
	int rc = 0;

	if (m == MARKER_UNAUTHENTICATED)
		log_msg(LOG_ERR,
			"re-wrap: .kekfs/%s is not authenticated (forged, or left by kekfs "
			"0daec58 or older): no re-wrap resumes from it; see 'kekfs fsck'",
			REWRAP_MARKER);
	if (m != MARKER_AUTHENTIC)
		return 0;
	pthread_mutex_lock(&r->lock);
	if (!r->st.running)
		rc = walk_start(r);
	pthread_mutex_unlock(&r->lock);
	return rc;
}

void rotation_get_status(struct rotation *r, struct rotation_status *st)
{
	pthread_mutex_lock(&r->lock);
	*st = r->st;
	if (st->running)
		st->elapsed = seconds_since(&r->started);
	pthread_mutex_unlock(&r->lock);
}

void rotation_wait(struct rotation *r)
{
	rotation_join(r);
}

void rotation_free(struct rotation *r)
{
	if (!r)
		return;
	r->stop = 1;
	rotation_join(r);
	pthread_mutex_destroy(&r->lock);
	free(r);
}
