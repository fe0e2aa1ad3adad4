#include "walk.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../backing/backing.h"
#include "../format/names.h"
#include "../format/volume.h"

struct walk {
	const atomic_int *stop; /* NULL: never */
	walk_visit_fn fn;
	void *ctx;
};

/* Walks dirfd (which it closes). */
static void walk_dir(int dirfd, unsigned depth, const struct walk *w)
{
	DIR *d = fdopendir(dirfd);
	struct dirent *de;

	if (!d) {
		close(dirfd);
		return;
	}
	while (!(w->stop && atomic_load(w->stop)) && (de = readdir(d)) != NULL) {
		const char *n = de->d_name;
		struct walk_entry e = {.dirfd = dirfd, .name = n, .depth = depth};
		int sub;

		if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0')))
			continue;
		e.type = backing_entry_type(dirfd, n); /* asked: d_type is not trusted */
		if (w->fn(w->ctx, &e) != 1 || e.type != DT_DIR)
			continue;
		sub = openat(dirfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0)
			walk_dir(sub, depth + 1, w);
	}
	closedir(d);
}

void walk_tree(int backing_fd, const atomic_int *stop, walk_visit_fn fn, void *ctx)
{
	struct walk w = {.stop = stop, .fn = fn, .ctx = ctx};
	int root = openat(backing_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (root >= 0)
		walk_dir(root, 0, &w);
}

struct regular_walk {
	int encrypted_names;
	walk_fn fn;
	void *ctx;
};

/* Regular files only, never the volume's own directory or the side files of names. */
static int regular_visit(void *ctx, const struct walk_entry *e)
{
	struct regular_walk *r = ctx;

	if (e->depth == 0 && strcmp(e->name, VOLUME_DIR) == 0)
		return 0;
	if (r->encrypted_names && name_is_internal(e->name))
		return 0;
	if (e->type == DT_REG)
		r->fn(r->ctx, e->dirfd, e->name);
	return 1;
}

void walk_regular_files(int backing_fd, int encrypted_names, const atomic_int *stop, walk_fn fn,
			void *ctx)
{
	struct regular_walk r = {.encrypted_names = encrypted_names, .fn = fn, .ctx = ctx};

	walk_tree(backing_fd, stop, regular_visit, &r);
}
