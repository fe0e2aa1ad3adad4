/* A one-line progress bar on stdout when it is a terminal (nothing otherwise). */
#ifndef KEKFS_PROGRESS_H
#define KEKFS_PROGRESS_H

#include <stdint.h>
#include <time.h>

struct progress {
	int tty;
	int shown;	      /* a bar is on the line now */
	struct timespec last; /* when it was last drawn: at most ten times a second */
};

void progress_init(struct progress *p);

/* "what: done/total files (pct%)", redrawn in place. */
void progress_show(struct progress *p, const char *what, uint64_t done, uint64_t total);

/* Wipes the bar so that a line of text can be printed; the next show draws it again. */
void progress_clear(struct progress *p);

#endif
