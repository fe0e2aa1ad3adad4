#include "target.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "../backing/backing.h"
#include "../format/volume.h"
#include "../volume/volume_lock.h"
#include "cli.h"
#include "control_client.h"

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
	backing_meta_path(real, VOLUME_FILE, cfg, sizeof(cfg));
	if (access(cfg, F_OK) != 0)
		return 0;
	*mounted = kekfs_mount_find(real, 1, m);
	return 1;
}

/* 1 if the daemon of the mount at mountpoint is gone (killed): statfs, which no cache
 * answers, fails with ENOTCONN. */
static int mount_dead(const char *mountpoint)
{
	struct statvfs sv;

	return statvfs(mountpoint, &sv) != 0 && errno == ENOTCONN;
}

/* A mount whose daemon was killed answers ENOTCONN to everything: say what to do. */
static int dead_mount_error(const char *mountpoint)
{
	return cli_error("the daemon of %s is gone: run 'kekfs umount %s'", mountpoint, mountpoint);
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
		if (mount_dead(m->mountpoint))
			return dead_mount_error(m->mountpoint);
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

/* The kekfs mount whose mount point is the longest prefix of path, made absolute as written:
 * a dead mount cannot be resolved. 1 if one is. */
static int mount_by_prefix(const char *path, struct kekfs_mount *m)
{
	static struct kekfs_mount all[64];
	char abs[2 * PATH_MAX + 2], cwd[PATH_MAX];
	size_t best = 0;
	int n = kekfs_mounts_all(all, 64);

	if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		snprintf(abs, sizeof(abs), "%s", path);
	else
		snprintf(abs, sizeof(abs), "%s/%s", cwd, path);
	for (int i = 0; i < n; i++) {
		size_t len = strlen(all[i].mountpoint);

		if (len > best && strncmp(abs, all[i].mountpoint, len) == 0 &&
		    (abs[len] == '/' || abs[len] == '\0')) {
			*m = all[i];
			best = len;
		}
	}
	return best > 0;
}

int target_real(const char *path, char *out)
{
	struct kekfs_mount m;

	if (realpath(path, out))
		return 0;
	if (errno == ENOTCONN && mount_by_prefix(path, &m))
		return dead_mount_error(m.mountpoint);
	return cli_error("%s: %s", path, strerror(errno));
}

int target_volume(const char *path, const char *real)
{
	char cfg[PATH_MAX + 32];
	struct kekfs_mount m;
	struct stat st;

	if (kekfs_mount_find(real, 0, &m))
		return mount_dead(real) ? dead_mount_error(m.mountpoint) : 0;
	if (stat(real, &st) != 0)
		return cli_error("%s: %s", path, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return cli_error("%s is not a directory: give the mount point or the backing "
				 "directory",
				 path);
	backing_meta_path(real, VOLUME_FILE, cfg, sizeof(cfg));
	if (access(cfg, F_OK) == 0)
		return 0;
	if (errno == EACCES)
		return cli_error("%s: permission denied", path);
	return cli_error("%s: not a kekfs volume: give the mount point or the backing directory",
			 path);
}

int target_lock_error(const char *backing, int rc, const struct volume_lock_holder *who,
		      const char *hint)
{
	char self[64] = "", host[80] = "";
	struct kekfs_mount m;

	if (rc == -ENOLCK)
		return fprintf(stderr,
			       "kekfs: warning: the file system of %s cannot lock files: "
			       "nothing refuses a second mount of it\n",
			       backing),
		       0;
	if (rc == -EINVAL)
		return cli_error("%s/%s/%s is not a regular file: remove it, kekfs makes it anew",
				 backing, VOLUME_DIR, VOLUME_LOCK_FILE);
	if (rc != -EWOULDBLOCK)
		return cli_error("cannot lock %s: %s", backing, strerror(-rc));
	if (gethostname(self, sizeof(self) - 1) == 0 && who->host[0] && strcmp(who->host, self))
		snprintf(host, sizeof(host), " on host %s", who->host);
	if (!who->exclusive && kekfs_mount_find(backing, 1, &m))
		return cli_error("%s is in use by the read-only kekfs mount %s: %s", backing,
				 m.mountpoint, hint);
	if (!who->exclusive)
		return cli_error("%s is in use by a read-only kekfs mount or an fsck: %s", backing,
				 hint);
	if (who->pid && who->mountpoint[0])
		return cli_error("%s is in use by the kekfs daemon of %s (pid %ld%s): %s", backing,
				 who->mountpoint, who->pid, host, hint);
	if (who->pid && who->command[0])
		return cli_error("%s is in use by 'kekfs %s' (pid %ld%s): wait for it to finish",
				 backing, who->command, who->pid, host);
	return cli_error("%s is in use by another kekfs process: %s", backing, hint);
}

int target_lock(const char *backing, enum volume_lock_mode mode, const char *command,
		const char *hint)
{
	struct volume_lock_holder who;
	int fd, rc = volume_lock_take(backing, mode, NULL, command, &fd, &who);

	/* fd stays open, and the lock held, until this process exits */
	return rc == 0 ? 0 : target_lock_error(backing, rc, &who, hint);
}
