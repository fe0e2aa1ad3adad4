#include "inode_table.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define INODE_BUCKETS (1u << 16)
#define FD_BUDGET_MIN 64

struct inode_table {
	struct kinode root;
	pthread_mutex_t table_lock;
	struct kinode **buckets;

	pthread_mutex_t fd_lock;
	struct kinode lru; /* sentinel: lru.lru_next is the most recently used */
	unsigned nfds, budget;
	int root_mount_id;
	int mount_fd;	    /* a plain (not O_PATH) fd of the root, as open_by_handle_at wants */
	int handles_usable; /* open_by_handle_at works here (needs CAP_DAC_READ_SEARCH) */

	/* Under table_lock: every inode in the hash by its address (its node id), and those kept
	 * after the kernel forgot them, newest at kept.kept_next. */
	struct kinode **ids;
	struct kinode kept;
	unsigned nkept;
	uint32_t last_generation;
};

static size_t inode_bucket(dev_t dev, ino_t ino)
{
	return (size_t)((ino * 0x9E3779B97F4A7C15ULL) ^ dev) & (INODE_BUCKETS - 1);
}

static size_t id_bucket(const struct kinode *ino)
{
	return (size_t)(((uintptr_t)ino >> 4) * 0x9E3779B97F4A7C15ULL >> 40) & (INODE_BUCKETS - 1);
}

/* A file handle for fd if it can be reopened through the root's mount; else NULL. */
static struct file_handle *handle_of_fd(struct inode_table *t, int fd)
{
	struct file_handle *h;
	int mount_id;

	if (!t->handles_usable)
		return NULL;
	h = malloc(sizeof(*h) + MAX_HANDLE_SZ);
	if (!h)
		return NULL;
	h->handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(fd, "", h, &mount_id, AT_EMPTY_PATH) != 0 ||
	    mount_id != t->root_mount_id) {
		free(h);
		return NULL;
	}
	return h;
}

/* Half the fd limit (raised to its hard maximum) for cached O_PATH fds; the rest for files. */
static unsigned fd_budget(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return FD_BUDGET_MIN;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		getrlimit(RLIMIT_NOFILE, &rl);
	return rl.rlim_cur / 2 > FD_BUDGET_MIN ? (unsigned)(rl.rlim_cur / 2) : FD_BUDGET_MIN;
}

/* Can an inode be found again from its handle? Tried once on the root. */
static int handles_probe(struct inode_table *t, int root_fd)
{
	struct file_handle *h = malloc(sizeof(*h) + MAX_HANDLE_SZ);
	int fd, ok = 0;

	if (!h)
		return 0;
	h->handle_bytes = MAX_HANDLE_SZ;
	t->mount_fd = openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t->mount_fd >= 0 &&
	    name_to_handle_at(root_fd, "", h, &t->root_mount_id, AT_EMPTY_PATH) == 0) {
		fd = open_by_handle_at(t->mount_fd, h, O_PATH | O_CLOEXEC);
		ok = fd >= 0;
		if (ok)
			close(fd);
	}
	free(h);
	return ok;
}

static void inode_init(struct kinode *ino, int fd, const struct stat *st)
{
	memset(ino, 0, sizeof(*ino));
	ino->fd = fd;
	ino->dev = st->st_dev;
	ino->ino = st->st_ino;
	ino->type = st->st_mode & S_IFMT;
	ino->nlookup = 1;
	pthread_rwlock_init(&ino->lock, NULL);
	range_lock_init(&ino->chunks);
}

struct inode_table *inode_table_new(int root_fd)
{
	struct inode_table *t = calloc(1, sizeof(*t));
	struct stat st;

	if (!t)
		return NULL;
	t->buckets = calloc(INODE_BUCKETS, sizeof(*t->buckets));
	t->ids = calloc(INODE_BUCKETS, sizeof(*t->ids));
	if (!t->buckets || !t->ids || fstatat(root_fd, "", &st, AT_EMPTY_PATH) != 0) {
		free(t->buckets);
		free(t->ids);
		free(t);
		return NULL;
	}
	t->kept.kept_next = t->kept.kept_prev = &t->kept;
	inode_init(&t->root, root_fd, &st);
	pthread_mutex_init(&t->table_lock, NULL);
	pthread_mutex_init(&t->fd_lock, NULL);
	t->lru.lru_next = t->lru.lru_prev = &t->lru;
	t->budget = fd_budget();
	t->handles_usable = handles_probe(t, root_fd);
	return t;
}

struct kinode *inode_table_root(struct inode_table *t)
{
	return &t->root;
}

unsigned inode_table_fds(struct inode_table *t, unsigned *budget)
{
	unsigned n;

	pthread_mutex_lock(&t->fd_lock);
	n = t->nfds;
	*budget = t->handles_usable ? t->budget : 0;
	pthread_mutex_unlock(&t->fd_lock);
	return n;
}

/* ---- fd cache; all under fd_lock ---- */

static void lru_remove(struct kinode *ino)
{
	if (!ino->lru_next)
		return;
	ino->lru_prev->lru_next = ino->lru_next;
	ino->lru_next->lru_prev = ino->lru_prev;
	ino->lru_next = ino->lru_prev = NULL;
}

static void lru_push(struct inode_table *t, struct kinode *ino)
{
	ino->lru_next = t->lru.lru_next;
	ino->lru_prev = &t->lru;
	t->lru.lru_next->lru_prev = ino;
	t->lru.lru_next = ino;
}

/* Closes the least recently used idle fds until the table is within its budget. */
static void fds_evict(struct inode_table *t)
{
	while (t->nfds > t->budget && t->lru.lru_prev != &t->lru) {
		struct kinode *victim = t->lru.lru_prev;

		lru_remove(victim);
		close(victim->fd);
		victim->fd = -1;
		t->nfds--;
	}
}

/* Counts a new fd held by an unpinned inode, and makes it evictable if it can come back. */
static void fd_adopt(struct inode_table *t, struct kinode *ino)
{
	t->nfds++;
	if (ino->handle)
		lru_push(t, ino);
	fds_evict(t);
}

int inode_pin(struct inode_table *t, struct kinode *ino)
{
	int fd;

	if (ino == &t->root)
		return 0;
	pthread_mutex_lock(&t->fd_lock);
	if (ino->fd < 0 && !ino->handle) { /* closed by inode_table_unlinked */
		pthread_mutex_unlock(&t->fd_lock);
		return -ENOENT;
	}
	if (ino->fd < 0) {
		fd = open_by_handle_at(t->mount_fd, ino->handle, O_PATH | O_CLOEXEC);
		if (fd < 0) {
			int err = -errno;
			pthread_mutex_unlock(&t->fd_lock);
			return err == -ESTALE ? -ENOENT : err;
		}
		ino->fd = fd;
		t->nfds++;
	}
	lru_remove(ino);
	ino->pins++;
	pthread_mutex_unlock(&t->fd_lock);
	return 0;
}

static void inode_destroy(struct kinode *ino);

void inode_unpin(struct inode_table *t, struct kinode *ino)
{
	int destroy;

	if (ino == &t->root)
		return;
	pthread_mutex_lock(&t->fd_lock);
	destroy = --ino->pins == 0 && ino->forgotten;
	if (destroy && ino->fd >= 0)
		t->nfds--;
	if (ino->pins == 0 && ino->kept && ino->fd >= 0) { /* kept: reopened if ever needed */
		close(ino->fd);
		ino->fd = -1;
		t->nfds--;
	} else if (ino->pins == 0 && !ino->forgotten && ino->handle) {
		lru_push(t, ino);
		fds_evict(t);
	}
	pthread_mutex_unlock(&t->fd_lock);
	if (destroy)
		inode_destroy(ino);
}

/* ---- the table; all under table_lock ---- */

static void id_insert(struct inode_table *t, struct kinode *ino)
{
	size_t b = id_bucket(ino);

	ino->id_next = t->ids[b];
	t->ids[b] = ino;
}

/* Takes ino out of both hashes and the kept list: no lookup finds it any more. */
static void table_remove(struct inode_table *t, struct kinode *ino)
{
	struct kinode **p;

	for (p = &t->buckets[inode_bucket(ino->dev, ino->ino)]; *p; p = &(*p)->next)
		if (*p == ino) {
			*p = ino->next;
			break;
		}
	for (p = &t->ids[id_bucket(ino)]; *p; p = &(*p)->id_next)
		if (*p == ino) {
			*p = ino->id_next;
			break;
		}
	if (ino->kept_next) {
		ino->kept_prev->kept_next = ino->kept_next;
		ino->kept_next->kept_prev = ino->kept_prev;
		ino->kept_next = ino->kept_prev = NULL;
		t->nkept--;
	}
}

/* A kept inode looked up again: no longer a candidate for dropping. */
static void kept_revive(struct inode_table *t, struct kinode *ino)
{
	if (!ino->kept_next)
		return;
	ino->kept_prev->kept_next = ino->kept_next;
	ino->kept_next->kept_prev = ino->kept_prev;
	ino->kept_next = ino->kept_prev = NULL;
	t->nkept--;
	pthread_mutex_lock(&t->fd_lock);
	ino->kept = 0;
	pthread_mutex_unlock(&t->fd_lock);
}

/* The live inode of (dev, ino), or NULL. Under the table lock. */
static struct kinode *inode_find(struct inode_table *t, dev_t dev, ino_t ino_nr)
{
	struct kinode *ino;

	for (ino = t->buckets[inode_bucket(dev, ino_nr)]; ino; ino = ino->next)
		if (ino->ino == ino_nr && ino->dev == dev && !ino->reused)
			break;
	return ino;
}

/*
 * Is fd (described by st) another object than ino, which had the same inode number? That
 * happens once ino's object is deleted and its fd closed (an open fd keeps the number
 * taken): the backing file system gives the number to a new object while the kernel still
 * remembers ino. Under both locks.
 */
static int inode_number_reused(struct inode_table *t, struct kinode *ino, int fd,
			       const struct stat *st)
{
	struct file_handle *h;
	int same;

	if ((st->st_mode & S_IFMT) != ino->type)
		return 1;
	if (ino->fd >= 0)
		return 0;
	if (!ino->handle)
		return 1; /* closed by inode_table_unlinked: its object is gone */
	h = handle_of_fd(t, fd);
	same = h && h->handle_type == ino->handle->handle_type &&
	       h->handle_bytes == ino->handle->handle_bytes &&
	       memcmp(h->f_handle, ino->handle->f_handle, h->handle_bytes) == 0;
	free(h);
	return !same;
}

/* Takes an inode out of the table for good: destroyed now (1: by the caller, once the table
 * lock is dropped) or, if an operation still holds it, at its last unpin. */
static int inode_retire(struct inode_table *t, struct kinode *ino)
{
	int pinned;

	table_remove(t, ino);
	pthread_mutex_lock(&t->fd_lock);
	lru_remove(ino);
	/* An operation may still hold it between its reply and its unpin: it frees it then. */
	pinned = ino->pins > 0;
	ino->forgotten = pinned;
	if (!pinned && ino->fd >= 0)
		t->nfds--;
	pthread_mutex_unlock(&t->fd_lock);
	return !pinned;
}

/*
 * Keeps an inode the kernel forgot but its backing handle can reopen, without its fd, so a
 * file handle naming it (node id and generation) still finds it; past INODE_KEPT_MAX the
 * oldest kept one goes. The inode the caller must destroy, or NULL.
 */
static struct kinode *inode_keep(struct inode_table *t, struct kinode *ino)
{
	struct kinode *oldest;

	ino->kept_next = t->kept.kept_next;
	ino->kept_prev = &t->kept;
	t->kept.kept_next->kept_prev = ino;
	t->kept.kept_next = ino;
	t->nkept++;
	pthread_mutex_lock(&t->fd_lock);
	ino->kept = 1;
	if (ino->pins == 0 && ino->fd >= 0) {
		lru_remove(ino);
		close(ino->fd);
		ino->fd = -1;
		t->nfds--;
	}
	pthread_mutex_unlock(&t->fd_lock);
	if (t->nkept <= INODE_KEPT_MAX)
		return NULL;
	oldest = t->kept.kept_prev;
	return inode_retire(t, oldest) ? oldest : NULL;
}

struct kinode *inode_table_get(struct inode_table *t, int fd, const struct stat *st)
{
	size_t b = inode_bucket(st->st_dev, st->st_ino);
	struct kinode *ino;

	pthread_mutex_lock(&t->table_lock);
	ino = inode_find(t, st->st_dev, st->st_ino);
	if (ino) {
		pthread_mutex_lock(&t->fd_lock);
		/* the old one stays (hidden) until the kernel forgets it; the new object gets
		 * a new inode, so the kernel never mixes the two up */
		ino->reused = inode_number_reused(t, ino, fd, st);
		pthread_mutex_unlock(&t->fd_lock);
		if (ino->reused)
			ino = NULL;
	}
	if (ino) {
		ino->nlookup++;
		kept_revive(t, ino);
		pthread_mutex_lock(&t->fd_lock);
		if (ino->fd < 0) { /* evicted: the fresh fd saves a reopen */
			ino->fd = fd;
			fd_adopt(t, ino);
			fd = -1;
		}
		pthread_mutex_unlock(&t->fd_lock);
		if (fd >= 0)
			close(fd);
	} else if ((ino = malloc(sizeof(*ino))) != NULL) {
		inode_init(ino, fd, st);
		ino->handle = handle_of_fd(t, fd);
		ino->generation = ++t->last_generation;
		ino->next = t->buckets[b];
		t->buckets[b] = ino;
		id_insert(t, ino);
		pthread_mutex_lock(&t->fd_lock);
		fd_adopt(t, ino);
		pthread_mutex_unlock(&t->fd_lock);
	} else {
		close(fd);
	}
	pthread_mutex_unlock(&t->table_lock);
	return ino;
}

/* No operation and no open file uses the inode's fd (called under fd_lock). */
static int inode_idle(struct kinode *ino)
{
	int idle;

	if (ino->pins > 0 || ino->fd < 0 || pthread_rwlock_trywrlock(&ino->lock) != 0)
		return 0;
	idle = ino->opens == 0; /* open files keep their fd: fstat, fchmod must go on working */
	pthread_rwlock_unlock(&ino->lock);
	return idle;
}

void inode_table_unlinked(struct inode_table *t, dev_t dev, ino_t ino_nr)
{
	struct kinode *ino, *dead = NULL;

	pthread_mutex_lock(&t->table_lock);
	ino = inode_find(t, dev, ino_nr);
	if (ino) {
		pthread_mutex_lock(&t->fd_lock);
		if (ino->fd >= 0 && inode_idle(ino)) {
			lru_remove(ino);
			close(ino->fd);
			ino->fd = -1;
			t->nfds--;
		}
		if (ino->fd < 0) {
			free(ino->handle);
			ino->handle = NULL;
		}
		pthread_mutex_unlock(&t->fd_lock);
		/* kept for file handles, but nothing can reopen it now */
		if (ino->nlookup == 0 && !ino->handle && inode_retire(t, ino))
			dead = ino;
	}
	pthread_mutex_unlock(&t->table_lock);
	if (dead)
		inode_destroy(dead);
}

/* Frees an inode already out of the hash table and the LRU. */
static void inode_destroy(struct kinode *ino)
{
	fileio_drop(&ino->fc);
	pthread_rwlock_destroy(&ino->lock);
	range_lock_destroy(&ino->chunks);
	if (ino->fd >= 0)
		close(ino->fd);
	free(ino->handle);
	free(ino);
}

struct kinode *inode_table_hold(struct inode_table *t, int pfd, const struct stat *st)
{
	if (t)
		return inode_table_get(t, pfd, st);
	close(pfd);
	return NULL;
}

void inode_table_release(struct inode_table *t, struct kinode *ino)
{
	if (ino)
		inode_table_forget(t, ino, 1);
}

void inode_table_forget(struct inode_table *t, struct kinode *ino, uint64_t n)
{
	struct kinode *dead;

	if (ino == &t->root)
		return;
	pthread_mutex_lock(&t->table_lock);
	ino->nlookup -= n < ino->nlookup ? n : ino->nlookup;
	if (ino->nlookup > 0) {
		pthread_mutex_unlock(&t->table_lock);
		return;
	}
	if (ino->handle && !ino->reused)
		dead = inode_keep(t, ino);
	else
		dead = inode_retire(t, ino) ? ino : NULL;
	pthread_mutex_unlock(&t->table_lock);
	if (dead)
		inode_destroy(dead);
}

struct kinode *inode_table_get_by_id(struct inode_table *t, uint64_t id)
{
	struct kinode *want = (struct kinode *)(uintptr_t)id, *ino;

	pthread_mutex_lock(&t->table_lock);
	for (ino = t->ids[id_bucket(want)]; ino && ino != want; ino = ino->id_next)
		;
	if (ino && ino->reused)
		ino = NULL;
	if (ino) {
		ino->nlookup++;
		kept_revive(t, ino);
	}
	pthread_mutex_unlock(&t->table_lock);
	return ino;
}

void inode_table_free(struct inode_table *t)
{
	if (!t)
		return;
	for (size_t b = 0; b < INODE_BUCKETS; b++) {
		struct kinode *ino = t->buckets[b];

		while (ino) {
			struct kinode *next = ino->next;
			inode_destroy(ino);
			ino = next;
		}
	}
	free(t->buckets);
	free(t->ids);
	fileio_drop(&t->root.fc);
	close(t->root.fd);
	if (t->mount_fd >= 0)
		close(t->mount_fd);
	pthread_rwlock_destroy(&t->root.lock);
	range_lock_destroy(&t->root.chunks);
	pthread_mutex_destroy(&t->table_lock);
	pthread_mutex_destroy(&t->fd_lock);
	free(t);
}
