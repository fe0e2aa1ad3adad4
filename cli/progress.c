#include "progress.h"

#include <stdio.h>
#include <unistd.h>

void progress_init(struct progress *p)
{
	p->tty = isatty(STDOUT_FILENO);
	p->shown = 0;
	p->last.tv_sec = 0;
	p->last.tv_nsec = 0;
}

void progress_show(struct progress *p, const char *what, uint64_t done, uint64_t total)
{
	struct timespec now;

	if (!p->tty || !total)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (done < total && now.tv_sec - p->last.tv_sec < 2 &&
	    (now.tv_sec - p->last.tv_sec) * 1000000000L + (now.tv_nsec - p->last.tv_nsec) <
		100000000L)
		return;
	p->last = now;
	p->shown = 1;
	printf("\r%s: %llu/%llu files (%3.0f%%)", what, (unsigned long long)done,
	       (unsigned long long)total, 100.0 * (double)done / (double)total);
	fflush(stdout);
}

void progress_clear(struct progress *p)
{
	if (p->shown)
		fputs("\r\033[K", stdout);
	p->shown = 0;
}
