/* kekfs as a mount(8) helper: 'mount -t fuse.kekfs', 'mount -t kekfs' and /etc/fstab. */
#ifndef KEKFS_MOUNT_HELPER_H
#define KEKFS_MOUNT_HELPER_H

/*
 * 1 if argv has the shape mount(8) and mount.fuse3 use: the program is called mount.kekfs,
 * or it is given SOURCE and an absolute MOUNTPOINT instead of a command.
 */
int mount_helper_wanted(int argc, char **argv);

/* Runs 'kekfs mount' for 'PROG SOURCE MOUNTPOINT [-sfnv] [-o OPTS] [-t TYPE]'. */
int cmd_mount_helper(int argc, char **argv);

/* Classifies a -o option kekfs itself does not define. */
enum generic_opt {
	GENERIC_UNKNOWN, /* not a mount option kekfs knows: an error */
	GENERIC_IGNORED, /* for mount(8) or systemd (nofail, _netdev, x-systemd.*, ...) */
	GENERIC_KERNEL,	 /* a kernel mount flag FUSE passes on (nosuid, nodev, noexec, ...) */
};
enum generic_opt mount_opt_generic(const char *opt);

#endif
