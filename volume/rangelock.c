/*
 * Chunk range locks: a list of held ranges under one mutex. Few requests are in flight on one
 * file at a time (the FUSE worker threads), so a list is short and a scan is cheap.
 */
#include "rangelock.h"

void range_lock_init(struct range_lock *rl)
{
	pthread_mutex_init(&rl->mu, NULL);
	pthread_cond_init(&rl->freed, NULL);
	rl->held = NULL;
}

void range_lock_destroy(struct range_lock *rl)
{
	pthread_cond_destroy(&rl->freed);
	pthread_mutex_destroy(&rl->mu);
}

/* Two holders conflict when their ranges overlap and either writes. */
static int range_conflicts(const struct range_lock *rl, const struct range_hold *h)
{
	for (const struct range_hold *o = rl->held; o; o = o->next)
		if ((o->write || h->write) && o->first <= h->last && h->first <= o->last)
			return 1;
	return 0;
}

void range_lock_acquire(struct range_lock *rl, struct range_hold *h, uint64_t first, uint64_t last,
			int write)
{
	h->first = first;
	h->last = last;
	h->write = write;
	pthread_mutex_lock(&rl->mu);
	while (range_conflicts(rl, h))
		pthread_cond_wait(&rl->freed, &rl->mu);
	h->next = rl->held;
	rl->held = h;
	pthread_mutex_unlock(&rl->mu);
}

void range_lock_release(struct range_lock *rl, struct range_hold *h)
{
	struct range_hold **p;

	pthread_mutex_lock(&rl->mu);
	for (p = &rl->held; *p != h; p = &(*p)->next)
		;
	*p = h->next;
	pthread_cond_broadcast(&rl->freed);
	pthread_mutex_unlock(&rl->mu);
}
