#include "mounts.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s)
{
	char *out = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] && s[3]) {
			*out++ = (char)(((s[1] - '0') << 6) | ((s[2] - '0') << 3) | (s[3] - '0'));
			s += 3;
		} else {
			*out++ = *s;
		}
	}
	*out = '\0';
}

/* Splits one mountinfo line into mount point, fstype, source and super options. */
static int parse_line(char *line, char **mnt, char **type, char **src, char **opts)
{
	char *save = NULL, *tok;
	int field = 0, after_dash = 0;

	*mnt = *type = *src = *opts = NULL;
	for (tok = strtok_r(line, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
		if (!after_dash && strcmp(tok, "-") == 0) {
			after_dash = 1;
			field = 0;
			continue;
		}
		if (!after_dash && field == 4)
			*mnt = tok;
		else if (after_dash && field == 0)
			*type = tok;
		else if (after_dash && field == 1)
			*src = tok;
		else if (after_dash && field == 2)
			*opts = tok;
		field++;
	}
	if (!*mnt || !*type || !*src)
		return -1;
	unescape(*mnt);
	unescape(*src);
	return 0;
}

/*
 * Looks for path among the mount points (or, by_backing, the sources) of the mount table;
 * with path NULL, lists every kekfs mount into m (up to max). Returns how many matched.
 */
static int mounts_scan(const char *path, int by_backing, int kekfs_only, struct kekfs_mount *m,
		       int max)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[3 * PATH_MAX], *mnt, *type, *src, *opts;
	int found = 0;

	if (!f)
		return 0;
	while (found < max && fgets(line, sizeof(line), f)) {
		if (parse_line(line, &mnt, &type, &src, &opts) != 0)
			continue;
		if (kekfs_only && strcmp(type, "fuse.kekfs") != 0)
			continue;
		if (path && strcmp(by_backing ? src : mnt, path) != 0)
			continue;
		if (m) {
			const char *uid = opts ? strstr(opts, "user_id=") : NULL;

			snprintf(m[found].mountpoint, sizeof(m->mountpoint), "%s", mnt);
			snprintf(m[found].backing, sizeof(m->backing), "%s", src);
			m[found].uid = uid ? (uid_t)strtoul(uid + 8, NULL, 10) : 0;
		}
		found++;
	}
	fclose(f);
	return found;
}

int path_is_mounted(const char *path)
{
	return mounts_scan(path, 0, 0, NULL, 1);
}

int kekfs_mount_find(const char *path, int by_backing, struct kekfs_mount *m)
{
	return mounts_scan(path, by_backing, 1, m, 1);
}

int kekfs_mounts_all(struct kekfs_mount *m, int max)
{
	return mounts_scan(NULL, 0, 1, m, max);
}

/* 1 if path is mp or lies under it. */
static int path_under(const char *path, const char *mp)
{
	size_t n = strlen(mp);

	return strncmp(path, mp, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* 1 if /proc/pid/what (a symlink: cwd, root, fd/N) points under mp. */
static int link_under(const char *pid, const char *what, const char *mp)
{
	char link[64 + NAME_MAX], target[PATH_MAX];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/%s/%s", pid, what);
	n = readlink(link, target, sizeof(target) - 1);
	if (n <= 0)
		return 0;
	target[n] = '\0';
	return path_under(target, mp);
}

/* 1 if the process holds an open file, its cwd or root, or a mapping under mp. */
static int process_holds(const char *pid, const char *mp)
{
	char path[64 + NAME_MAX], line[PATH_MAX + 128];
	struct dirent *de;
	int held = link_under(pid, "cwd", mp) || link_under(pid, "root", mp);
	DIR *fds;
	FILE *maps;

	snprintf(path, sizeof(path), "/proc/%s/fd", pid);
	for (fds = held ? NULL : opendir(path); fds && (de = readdir(fds)) && !held;) {
		snprintf(path, sizeof(path), "fd/%s", de->d_name);
		held = de->d_name[0] != '.' && link_under(pid, path, mp);
	}
	if (fds)
		closedir(fds);
	snprintf(path, sizeof(path), "/proc/%s/maps", pid);
	for (maps = held ? NULL : fopen(path, "r"); maps && fgets(line, sizeof(line), maps);) {
		char *file = strchr(line, '/');

		line[strcspn(line, "\n")] = '\0';
		if (file && path_under(file, mp)) {
			held = 1;
			break;
		}
	}
	if (maps)
		fclose(maps);
	return held;
}

/* Appends "pid N (COMM)" to out. */
static void holder_append(char *out, size_t size, const char *pid)
{
	char path[64 + NAME_MAX], comm[64] = "?";
	size_t used = strlen(out);
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%s/comm", pid);
	f = fopen(path, "r");
	if (f && fgets(comm, sizeof(comm), f))
		comm[strcspn(comm, "\n")] = '\0';
	if (f)
		fclose(f);
	snprintf(out + used, size - used, "%spid %s (%s)", used ? ", " : "", pid, comm);
}

int mount_holders(const char *mp, char *out, size_t size)
{
	char self[32];
	struct dirent *de;
	DIR *proc = opendir("/proc");
	int found = 0;

	out[0] = '\0';
	snprintf(self, sizeof(self), "%ld", (long)getpid());
	while (proc && (de = readdir(proc))) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9' || strcmp(de->d_name, self) == 0 ||
		    !process_holds(de->d_name, mp))
			continue;
		if (found++ < 5)
			holder_append(out, size, de->d_name);
	}
	if (proc)
		closedir(proc);
	if (found > 5)
		snprintf(out + strlen(out), size - strlen(out), " and %d more", found - 5);
	return found;
}
