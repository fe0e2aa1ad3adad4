/*
 * A small pool of helper threads that share the chunk crypto of large requests with the
 * thread that received them. Work is claimed item by item, so the caller never waits for a
 * helper that has not started: on a busy machine it simply does the items itself. No FUSE.
 */
#ifndef KEKFS_PARALLEL_H
#define KEKFS_PARALLEL_H

#include <stddef.h>

struct par_pool;

/* Starts helpers threads (0: none; every par_run then runs on its caller alone). */
struct par_pool *par_pool_new(unsigned helpers);

/* Stops the helpers. NULL is fine. */
void par_pool_free(struct par_pool *p);

/*
 * Runs fn(arg, i) for every i in [0, n), on the calling thread and any idle helper, and
 * returns once all have run: 0, or the first non-zero value an fn returned (the other
 * items still run). p may be NULL (serial).
 */
int par_run(struct par_pool *p, size_t n, int (*fn)(void *arg, size_t i), void *arg);

#endif
