#include "target.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "../fs/control.h"
#include "../fs/volume.h"
#include "cli.h"

int target_absolute(const char *path, char *out, size_t size)
{
	char a[PATH_MAX], b[PATH_MAX], dir[PATH_MAX];

	snprintf(a, sizeof(a), "%s", path);
	snprintf(b, sizeof(b), "%s", path);
	if (!realpath(dirname(a), dir))
		return -errno;
	if (strcmp(basename(b), ".") == 0 || strcmp(basename(b), "..") == 0 ||
	    strcmp(basename(b), "/") == 0)
		return realpath(path, out) ? 0 : -errno;
	if ((size_t)snprintf(out, size, "%s/%s", strcmp(dir, "/") ? dir : "", basename(b)) >= size)
		return -ENAMETOOLONG;
	return 0;
}

int target_mount_of(const char *abs, struct kekfs_mount *m)
{
	char d[PATH_MAX];

	snprintf(d, sizeof(d), "%s", abs);
	for (;;) {
		if (kekfs_mount_find(d, 0, m))
			return 1;
		if (path_is_mounted(d) || strcmp(d, "/") == 0)
			return 0;
		*strrchr(d, '/') = '\0'; /* abs is absolute: there is always a slash */
		if (!d[0])
			strcpy(d, "/");
	}
}

int target_mount_read_only(const char *mountpoint)
{
	struct statvfs sv;

	return statvfs(mountpoint, &sv) == 0 && (sv.f_flag & ST_RDONLY);
}

int target_is_backing(const char *dir, char *real, struct kekfs_mount *m, int *mounted)
{
	char cfg[PATH_MAX + 32];

	if (!realpath(dir, real))
		return 0;
	snprintf(cfg, sizeof(cfg), "%s/%s/%s", real, VOLUME_DIR, VOLUME_FILE);
	if (access(cfg, F_OK) != 0)
		return 0;
	*mounted = kekfs_mount_find(real, 1, m);
	return 1;
}

int target_ask(const struct kekfs_mount *m, const char *cmd, char **body)
{
	char err[PATH_MAX + 256];
	size_t len = 0;
	FILE *out = open_memstream(body, &len);
	int rc;

	if (!out)
		return cli_error("out of memory");
	rc = control_request(m->mountpoint, m->uid, cmd, out, err, sizeof(err));
	fclose(out);
	if (rc != 0) {
		free(*body);
		*body = NULL;
		return cli_error("%s", err);
	}
	return 0;
}

const char *target_rel(const char *path, const char *abs, const struct kekfs_mount *m,
		       const char *what)
{
	const char *rel = abs + strlen(m->mountpoint);

	rel += *rel == '/';
	if (!*rel)
		return cli_error("%s: refusing to %s the root of the volume", path, what), NULL;
	if (strchr(rel, '\n'))
		return cli_error("%s: a path with a newline cannot be sent to the daemon", path),
		       NULL;
	return rel;
}
