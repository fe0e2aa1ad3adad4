/* The human-readable status of a volume, mounted (with its re-wrap) or not. */
#ifndef KEKFS_STATUS_H
#define KEKFS_STATUS_H

#include <stdio.h>

#include "../format/volume.h"
#include "rotation.h"

struct volume_status {
	const char *backing;
	const char *mountpoint; /* NULL when not mounted */
	const struct volume *vol;
	const struct keyring *kr;
	struct rotation *rot; /* NULL when not mounted: no re-wrap to show */
};

void volume_status_print(FILE *out, const struct volume_status *info);

#endif
