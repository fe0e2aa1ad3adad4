/*
 * Host state: the highest keyring generation this host has seen of each volume, kept outside
 * the backing directory, so that an old copy of .kekfs/ put back into it (keyring and volume
 * config together) is still caught. One file per volume id (32 hex digits) holding the
 * generation in decimal, in /var/lib/kekfs for root and in $XDG_STATE_HOME/kekfs (default
 * ~/.local/state/kekfs) for other users; the directory is the user's own, mode 0700.
 */
#ifndef KEKFS_HOSTSTATE_H
#define KEKFS_HOSTSTATE_H

#include <stddef.h>
#include <stdint.h>

#define HOSTSTATE_ROOT_DIR "/var/lib/kekfs"
#define HOSTSTATE_ID_LEN 16 /* a volume id */

/* This user's state directory, into out. 0, or -ENAMETOOLONG, or -ENOENT (no home). */
int hoststate_dir(char *out, size_t size);

/*
 * The generation recorded for volume_id, 0 if none (a new host, a wiped state). 0, or -errno:
 * -EPERM when the directory is not the user's own 0700 directory, -EINVAL for a damaged file.
 */
int hoststate_seen(const uint8_t volume_id[HOSTSTATE_ID_LEN], uint64_t *generation);

/*
 * Records generation for volume_id, creating the directory: only when it is higher than the
 * one recorded, unless lower is set (an override that accepted an older keyring). 0, -errno.
 */
int hoststate_record(const uint8_t volume_id[HOSTSTATE_ID_LEN], uint64_t generation, int lower);

#endif
