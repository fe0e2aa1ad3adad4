/*
 * 'mount -o remount,ro|rw MOUNTPOINT': mount.fuse3 runs 'kekfs SOURCE MOUNTPOINT -o
 * ...,remount,...', which arrives here as 'kekfs mount -o ... SOURCE MOUNTPOINT'. Only ro and
 * rw change; every other flag of the mount (nosuid, nodev, noexec, atime ones) stays as it
 * is. The daemon is told first, so that while the kernel refuses writes its own key work
 * does not write the volume either (fs/control.c "readonly").
 */
#include "cmd_remount.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statvfs.h>

#include "cli.h"
#include "control_client.h"
#include "mounts.h"

/* Whether one -o list names remount; *read_only follows its last ro or rw. */
static int opts_remount(const char *opts, int *read_only)
{
	char buf[1024], *save = NULL;
	int remount = 0;

	snprintf(buf, sizeof(buf), "%s", opts);
	for (char *o = strtok_r(buf, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
		if (strcmp(o, "remount") == 0)
			remount = 1;
		else if (strcmp(o, "ro") == 0 || strcmp(o, "rw") == 0)
			*read_only = o[1] == 'o';
	}
	return remount;
}

int remount_wanted(int argc, char **argv, int *read_only)
{
	int remount = 0;

	*read_only = 0;
	for (int i = 1; i + 1 < argc; i++)
		if (strcmp(argv[i], "-o") == 0)
			remount |= opts_remount(argv[++i], read_only);
		else if (strncmp(argv[i], "-o", 2) == 0)
			remount |= opts_remount(argv[i] + 2, read_only);
	return remount;
}

/* The mount's flags as they are, for MS_REMOUNT, which otherwise clears them. */
static unsigned long mount_flags_now(const struct statvfs *sv)
{
	static const struct {
		unsigned long st, ms;
	} map[] = {{ST_NOSUID, MS_NOSUID},	   {ST_NODEV, MS_NODEV},
		   {ST_NOEXEC, MS_NOEXEC},	   {ST_NOATIME, MS_NOATIME},
		   {ST_NODIRATIME, MS_NODIRATIME}, {ST_RELATIME, MS_RELATIME},
		   {ST_SYNCHRONOUS, MS_SYNCHRONOUS}};
	unsigned long ms = 0;

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (sv->f_flag & map[i].st)
			ms |= map[i].ms;
	return ms;
}

/* Tells the daemon of m; 0, or -1 with its one-line refusal printed. */
static int daemon_readonly(const struct kekfs_mount *m, int on, int quiet)
{
	char err[512];

	if (control_request(m->mountpoint, m->uid, on ? "readonly on" : "readonly off", NULL, err,
			    sizeof(err)) == 0)
		return 0;
	if (!quiet)
		cli_error("cannot remount %s %s: %s", m->mountpoint, on ? "read-only" : "read-write",
			  err);
	return -1;
}

int remount_run(const char *mountpoint, int read_only)
{
	struct kekfs_mount m;
	struct statvfs sv;
	char real[PATH_MAX];

	if (!realpath(mountpoint, real) || !kekfs_mount_find(real, 0, &m))
		return cli_fail("%s is not a kekfs mount: nothing to remount", mountpoint);
	if (statvfs(m.mountpoint, &sv) != 0)
		return cli_fail("cannot remount %s: %s", m.mountpoint, strerror(errno));
	if (daemon_readonly(&m, read_only, 0) != 0)
		return 1;
	if (mount(NULL, m.mountpoint, NULL,
		  MS_REMOUNT | mount_flags_now(&sv) | (read_only ? MS_RDONLY : 0), NULL) == 0)
		return 0;
	if (errno == EBUSY)
		cli_error("cannot remount %s read-only: files in it are open for writing; close "
			  "them and try again",
			  m.mountpoint);
	else
		cli_error("cannot remount %s: %s%s", m.mountpoint, strerror(errno),
			  errno == EPERM ? " (remounting needs root)" : "");
	daemon_readonly(&m, !read_only, 1); /* back to what the kernel still has */
	return 1;
}
