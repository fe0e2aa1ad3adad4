#include "walk.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "volume.h"

/* Backing entries that are not user files: the volume's own directory at the root. */
static int entry_skipped(int is_root, const char *name)
{
	if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
		return 1;
	return is_root && strcmp(name, VOLUME_DIR) == 0;
}

/* Walks dirfd (which it closes). */
static void walk_dir(int dirfd, int is_root, volatile int *stop, walk_fn fn, void *ctx)
{
	DIR *d = fdopendir(dirfd);
	struct dirent *de;

	if (!d) {
		close(dirfd);
		return;
	}
	while (!*stop && (de = readdir(d)) != NULL) {
		unsigned char type = de->d_type;
		struct stat st;

		if (entry_skipped(is_root, de->d_name))
			continue;
		if (type == DT_UNKNOWN && fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			type = S_ISDIR(st.st_mode)   ? DT_DIR
			       : S_ISREG(st.st_mode) ? DT_REG
						     : DT_UNKNOWN;
		if (type == DT_REG) {
			fn(ctx, dirfd, de->d_name);
		} else if (type == DT_DIR) {
			int sub = openat(dirfd, de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				walk_dir(sub, 0, stop, fn, ctx);
		}
	}
	closedir(d);
}

void walk_regular_files(int backing_fd, volatile int *stop, walk_fn fn, void *ctx)
{
	int root = openat(backing_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (root >= 0)
		walk_dir(root, 1, stop, fn, ctx);
}
