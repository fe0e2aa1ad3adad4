#include "mounts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
