/* Threads of the daemon that are not FUSE loop threads. No FUSE here. */
#ifndef KEKFS_THREAD_H
#define KEKFS_THREAD_H

#include <pthread.h>
#include <signal.h>

/*
 * Starts fn(arg) in a thread that blocks every signal, as do the threads it starts: signals
 * are for the FUSE loop's threads. A SIGTERM taken by another thread only sets libfuse's exit
 * flag and wakes no thread of the loop, so the daemon would not end until the next request.
 * pthread_create's result.
 */
static inline int thread_start_deaf(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

#endif
