/*
 * The free-space watcher: fstatfs of the backing directory, at most once per CHECK_BYTES
 * written or, when asked, once per CHECK_NS, so the write path pays one atomic add.
 */
#include "spacewatch.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#define CHECK_BYTES (4ull << 20)   /* written between two checks at most */
#define CHECK_NS (100 * 1000000ll) /* between two checks asked for by opens */
#define MARGIN (4ull << 20)	   /* backing metadata, headers of new files */

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Whether a path as /proc/self/mountinfo escapes it (\ooo octal) is path. */
static int mountinfo_path_is(const char *esc, const char *path)
{
	while (*esc && *path) {
		int c = (unsigned char)*esc++;

		if (c == '\\' && esc[0] >= '0' && esc[0] <= '3' && esc[1] >= '0' && esc[1] <= '7' &&
		    esc[2] >= '0' && esc[2] <= '7') {
			c = (esc[0] - '0') * 64 + (esc[1] - '0') * 8 + (esc[2] - '0');
			esc += 3;
		}
		if (c != (unsigned char)*path++)
			return 0;
	}
	return !*esc && !*path;
}

/*
 * Opens the kernel's cap on dirty pages of the mount at mp (FUSE gives each mount a bdi
 * limited strictly to 1% of the dirty threshold), found by the mount's device number.
 */
static int bdi_limit_open(const char *mp)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[2 * PATH_MAX], at[PATH_MAX], path[64];
	unsigned maj, min;
	int found = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%*d %*d %u:%u %*s %4095s", &maj, &min, at) == 3 &&
		    mountinfo_path_is(at, mp)) { /* the last one is the mount on top */
			snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/max_bytes", maj, min);
			found = 1;
		}
	fclose(f);
	return found ? open(path, O_RDONLY | O_CLOEXEC) : -1;
}

static int read_u64(int fd, uint64_t *v)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	if (n <= 0)
		return -1;
	buf[n] = 0;
	*v = strtoull(buf, NULL, 10);
	return 0;
}

/* What the kernel may hold dirty for the mount, stored as ciphertext, plus a margin. Without
 * the bdi's figure (kernels before 6.2), all of memory: every writable open is then direct. */
static void reserve_update(struct spacewatch *sw)
{
	uint64_t limit;

	if (!sw->resolved) {
		sw->resolved = 1;
		sw->limit_fd = sw->mountpoint[0] ? bdi_limit_open(sw->mountpoint) : -1;
	}
	if (sw->limit_fd < 0 || read_u64(sw->limit_fd, &limit) != 0)
		limit = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
	sw->reserve = limit + (limit / sw->chunk + 1) * sw->overhead + MARGIN;
}

/* Compares the free space with the reserve; one thread at a time, the others keep the last
 * answer meanwhile. Returns 1 if the disk turned low. */
static int check(struct spacewatch *sw)
{
	struct statfs st;
	int was, low;

	if (pthread_mutex_trylock(&sw->check_lock) != 0)
		return 0;
	atomic_store(&sw->unchecked, 0);
	atomic_store(&sw->checked_ns, now_ns());
	reserve_update(sw);
	was = low = atomic_load(&sw->low);
	if (fstatfs(sw->backing_fd, &st) == 0) /* root may use the blocks kept for root */
		low = (uint64_t)(geteuid() == 0 ? st.f_bfree : st.f_bavail) *
			  (uint64_t)(st.f_frsize ? st.f_frsize : st.f_bsize) <
		      sw->reserve;
	atomic_store(&sw->low, low);
	pthread_mutex_unlock(&sw->check_lock);
	return low && !was;
}

void spacewatch_init(struct spacewatch *sw, int backing_fd, const char *mountpoint, uint64_t chunk,
		     uint64_t overhead)
{
	memset(sw, 0, sizeof(*sw));
	sw->backing_fd = backing_fd;
	if (mountpoint)
		snprintf(sw->mountpoint, sizeof(sw->mountpoint), "%s", mountpoint);
	sw->chunk = chunk;
	sw->overhead = overhead;
	sw->limit_fd = -1;
	pthread_mutex_init(&sw->check_lock, NULL);
}

void spacewatch_start(struct spacewatch *sw)
{
	(void)check(sw);
}

void spacewatch_destroy(struct spacewatch *sw)
{
	if (sw->limit_fd >= 0)
		close(sw->limit_fd);
	pthread_mutex_destroy(&sw->check_lock);
}

int spacewatch_wrote(struct spacewatch *sw, uint64_t bytes)
{
	if (atomic_fetch_add_explicit(&sw->unchecked, bytes, memory_order_relaxed) + bytes <
	    CHECK_BYTES)
		return 0;
	return check(sw);
}

int spacewatch_full(struct spacewatch *sw)
{
	atomic_store(&sw->checked_ns, now_ns());
	return !atomic_exchange(&sw->low, 1);
}

int spacewatch_low(struct spacewatch *sw, int *turned)
{
	*turned = now_ns() - atomic_load(&sw->checked_ns) >= CHECK_NS && check(sw);
	return atomic_load(&sw->low);
}
