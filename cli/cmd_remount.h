/* 'mount -o remount,ro|rw' of a kekfs mount (cli/cmd_remount.c). */
#ifndef KEKFS_CMD_REMOUNT_H
#define KEKFS_CMD_REMOUNT_H

/* 1 if a 'kekfs mount' argv's -o options ask for a remount; *read_only: ro (1) or rw (0). */
int remount_wanted(int argc, char **argv, int *read_only);

/* Remounts the kekfs mount at mountpoint read-only or read-write; the exit status. */
int remount_run(const char *mountpoint, int read_only);

#endif
