#include "walk.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "names.h"
#include "volume.h"

struct walk {
	int encrypted_names;
	volatile int *stop;
	walk_fn fn;
	void *ctx;
};

/* Backing entries that are not user files: the volume's own directory, side files. */
static int entry_skipped(const struct walk *w, int is_root, const char *name)
{
	if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
		return 1;
	if (w->encrypted_names && name_is_internal(name))
		return 1;
	return is_root && strcmp(name, VOLUME_DIR) == 0;
}

/* Walks dirfd (which it closes). */
static void walk_dir(int dirfd, int is_root, const struct walk *w)
{
	DIR *d = fdopendir(dirfd);
	struct dirent *de;

	if (!d) {
		close(dirfd);
		return;
	}
	while (!*w->stop && (de = readdir(d)) != NULL) {
		unsigned char type = de->d_type;
		struct stat st;

		if (entry_skipped(w, is_root, de->d_name))
			continue;
		if (type == DT_UNKNOWN && fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			type = S_ISDIR(st.st_mode)   ? DT_DIR
			       : S_ISREG(st.st_mode) ? DT_REG
						     : DT_UNKNOWN;
		if (type == DT_REG) {
			w->fn(w->ctx, dirfd, de->d_name);
		} else if (type == DT_DIR) {
			int sub = openat(dirfd, de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				walk_dir(sub, 0, w);
		}
	}
	closedir(d);
}

void walk_regular_files(int backing_fd, int encrypted_names, volatile int *stop, walk_fn fn,
			void *ctx)
{
	struct walk w = {.encrypted_names = encrypted_names, .stop = stop, .fn = fn, .ctx = ctx};
	int root = openat(backing_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (root >= 0)
		walk_dir(root, 1, &w);
}
