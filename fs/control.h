/*
 * The control socket of a mounted volume: `kekfs status|rotate MOUNTPOINT` talk to the
 * daemon through it. Only root and the user who mounted may connect (SO_PEERCRED), and a
 * client talks only to a daemon that is that user or root, through a socket directory that
 * only that user can write (checked by both). The protocol is one command line in, then
 * "ok" or "error MESSAGE" and text lines out.
 */
#ifndef KEKFS_CONTROL_H
#define KEKFS_CONTROL_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "../volume/redata.h"
#include "../volume/rotation.h"
#include "../volume/shred.h"

struct control_info {
	const char *backing;
	int backing_fd;		  /* O_PATH, for key commands' census */
	const char *keyring_path; /* where key changes are saved */
	const char *audit_dir;	  /* BACKING/.kekfs */
	const char *volume_path;  /* BACKING/.kekfs/volume: records the keyring generation */
	const char *mountpoint;	  /* NULL when describing an unmounted volume */
	struct volume *vol;
	struct keyring *kr;
	struct rotation *rot;
	struct shred *shred;   /* NULL on read-only mounts */
	struct redata *redata; /* NULL on read-only mounts */
};

struct control;

/*
 * "rewrap progress" answers one line of numbers for a client to follow a re-wrap with
 * (kekfs rotate --wait): the state, then the target version, files done and total,
 * re-wrapped, failed, whether the name key is done, and milliseconds since the walk began.
 */
enum rewrap_state { REWRAP_NONE = 0, REWRAP_RUNNING = 1, REWRAP_FINISHED = 2 };
#define REWRAP_PROGRESS_FMT "%u %u %llu %llu %llu %llu %u %llu"

/* Listens and serves in a thread of its own; NULL with errno set on failure. */
struct control *control_start(const struct control_info *info, uid_t uid);

void control_stop(struct control *c);

#endif
