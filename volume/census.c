#include "census.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../format/header.h"
#include "../format/namedir.h"
#include "fileio.h"
#include "walk.h"

struct census_walk {
	struct census *c;
	uint32_t version;
	const struct volume *vol; /* census_unopenable: the volume and the keyring to try */
	const struct keyring *kr;
};

/* Adds the backing path of dirfd/name to c's examples while there is room. */
static void census_example(struct census *c, int dirfd, const char *name)
{
	char proc[64], dir[PATH_MAX];
	ssize_t n;

	if (c->nexamples >= CENSUS_EXAMPLES)
		return;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", dirfd);
	n = readlink(proc, dir, sizeof(dir) - 1);
	dir[n > 0 ? n : 0] = '\0';
	snprintf(c->examples[c->nexamples++], PATH_MAX, "%.2000s/%.1000s", dir, name);
}

static void census_file(void *ctx, int dirfd, const char *name)
{
	struct census_walk *w = ctx;
	struct census *c = w->c;
	uint32_t version;
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOATIME | O_CLOEXEC);

	if (fd < 0 || fileio_kek_version(fd, &version) != 0) {
		c->unreadable++;
	} else if (version == w->version) {
		census_example(c, dirfd, name);
		c->files++;
	}
	if (fd >= 0)
		close(fd);
}

/*
 * On an encrypted-names volume, each example becomes its path in the volume ("/docs/a"), so
 * the person asking can tell which file it is; one that does not decrypt stays as found.
 */
static void census_plain_names(int backing_fd, const struct volume *vol, struct census *c)
{
	char proc[64], root[PATH_MAX], plain[PATH_MAX];
	struct name_keys *nk;
	ssize_t n;

	if (vol->name_mode != NAMES_AES_SIV || !vol->name_key || c->nexamples == 0)
		return;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", backing_fd);
	n = readlink(proc, root, sizeof(root) - 1);
	nk = n > 0 ? name_keys_new(vol->name_key) : NULL;
	if (!nk)
		return;
	root[n] = '\0';
	for (unsigned i = 0; i < c->nexamples; i++) {
		const char *rel = c->examples[i] + n;

		if (strncmp(c->examples[i], root, (size_t)n) == 0 && rel[0] == '/' &&
		    namepath_decrypt(backing_fd, nk, vol->root_dir_id, rel, plain, sizeof(plain)) ==
			0)
			snprintf(c->examples[i], PATH_MAX, "%s", plain);
	}
	name_keys_free(nk);
}

void census_take(int backing_fd, const struct volume *vol, uint32_t version, struct census *c)
{
	struct census_walk w = {.c = c, .version = version};

	memset(c, 0, sizeof(*c));
	c->name_key = vol->cur.kek_version == version;
	walk_regular_files(backing_fd, vol->name_mode == NAMES_AES_SIV, NULL, census_file, &w);
	census_plain_names(backing_fd, vol, c);
}

/* Counts a file whose header is sound but none of whose slots opens with the keyring tried. */
static void census_file_unopenable(void *ctx, int dirfd, const char *name)
{
	struct census_walk *w = ctx;
	uint8_t buf[HEADER_LEN];
	struct file_header h;
	int state[2];
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOATIME | O_CLOEXEC);

	if (fd < 0 || pread(fd, buf, HEADER_LEN, 0) != HEADER_LEN ||
	    header_decode(buf, w->vol, &h) != HDR_OK) {
		w->c->unreadable++; /* damaged or shredded: no keyring opens it */
	} else {
		header_check_slots(&h, w->vol, w->kr, state);
		if (state[0] != SLOT_OK && state[1] != SLOT_OK) {
			census_example(w->c, dirfd, name);
			w->c->files++;
		}
	}
	if (fd >= 0)
		close(fd);
}

void census_unopenable(int backing_fd, const struct volume *vol, const struct keyring *kr,
		       struct census *c)
{
	struct census_walk w = {.c = c, .vol = vol, .kr = kr};

	memset(c, 0, sizeof(*c));
	walk_regular_files(backing_fd, vol->name_mode == NAMES_AES_SIV, NULL,
			   census_file_unopenable, &w);
	census_plain_names(backing_fd, vol, c);
}

/* "needed by 3 files and the name key, e.g. /b/x, /b/y" */
static void census_describe(const struct census *c, char *out, size_t size)
{
	size_t n =
	    (size_t)snprintf(out, size, "needed by %llu file%s%s", (unsigned long long)c->files,
			     c->files == 1 ? "" : "s", c->name_key ? " and the name key" : "");

	for (unsigned i = 0; i < c->nexamples && n < size; i++)
		n += (size_t)snprintf(out + n, size - n, "%s%s", i ? ", " : ", e.g. ",
				      c->examples[i]);
}

int census_change_kek(int backing_fd, struct volume *vol, struct keyring *kr,
		      const char *keyring_path, const char *audit_dir,
		      const struct audit_actor *actor, uint32_t version, enum kek_change change,
		      uint64_t when, int force, char *msg, size_t msg_size)
{
	static const char *const done[] = {"retired", "restored to decrypt-only",
					   "pending destruction", "destroyed"};
	static const char *const ops[] = {"retire", "restore", "destroy-pending", "destroy"};
	struct audit_event ev = {.kek = version, .result = "ok"};
	char needed[4096] = "";
	struct census c;
	int rc;

	rc = keyring_kek_change_allowed(kr, version, change);
	if (rc != KR_OK) {
		snprintf(msg, msg_size, "KEK v%u: %s", version, keyring_strerror(rc));
		return -1;
	}
	if (change != KEK_RESTORE) {
		census_take(backing_fd, vol, version, &c);
		if (c.files || c.name_key) {
			census_describe(&c, needed, sizeof(needed));
			if (!force) {
				snprintf(msg, msg_size,
					 "KEK v%u is still %s: rotate and let the re-wrap "
					 "finish, or use --force to make them unreadable",
					 version, needed);
				return -1;
			}
		}
	}
	rc = keyring_change_kek(kr, keyring_path, version, change, when);
	if (rc != KR_OK) {
		snprintf(msg, msg_size, "KEK v%u: %s", version, keyring_strerror(rc));
		return -1;
	}
	snprintf(msg, msg_size, "KEK v%u %s%s%s", version, done[change],
		 needed[0] ? "; FORCED although it was " : "", needed);
	/* Every saved key change: a keyring copy from before it must now be refused. */
	volume_record_generation(vol, kr, NULL);
	ev.op = ops[change];
	ev.detail = needed[0] ? "forced while still in use" : NULL;
	ev.uid = actor->uid;
	ev.pid = actor->pid;
	audit_append(audit_dir, kr, &ev);
	return 0;
}
