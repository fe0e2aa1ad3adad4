#include "parallel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "thread.h"

struct par_job {
	struct par_job *next; /* in the pool's queue */
	int (*fn)(void *arg, size_t i);
	void *arg;
	size_t n;
	atomic_size_t claimed; /* next item to run */
	atomic_int rc;
	unsigned active; /* helpers inside the job; under the pool lock */
};

struct par_pool {
	pthread_mutex_t lock;
	pthread_cond_t work; /* a job was queued, or the pool stops */
	pthread_cond_t idle; /* a helper left a job */
	struct par_job *queue;
	int stopping;
	unsigned nthreads;
	pthread_t threads[];
};

/* Runs items of job until none is left to claim. */
static void job_drain(struct par_job *job)
{
	size_t i;

	while ((i = atomic_fetch_add(&job->claimed, 1)) < job->n) {
		int rc = job->fn(job->arg, i);
		int none = 0;

		if (rc != 0)
			atomic_compare_exchange_strong(&job->rc, &none, rc);
	}
}

static void job_unqueue(struct par_pool *p, struct par_job *job)
{
	for (struct par_job **j = &p->queue; *j; j = &(*j)->next)
		if (*j == job) {
			*j = job->next;
			return;
		}
}

static void *helper_main(void *arg)
{
	struct par_pool *p = arg;
	struct par_job *job;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->stopping && !p->queue)
			pthread_cond_wait(&p->work, &p->lock);
		if (p->stopping)
			break;
		job = p->queue;
		if (atomic_load(&job->claimed) >= job->n) { /* nothing left to share */
			job_unqueue(p, job);
			continue;
		}
		job->active++;
		pthread_mutex_unlock(&p->lock);
		job_drain(job);
		pthread_mutex_lock(&p->lock);
		job_unqueue(p, job);
		job->active--;
		pthread_cond_broadcast(&p->idle);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

struct par_pool *par_pool_new(unsigned helpers)
{
	struct par_pool *p = calloc(1, sizeof(*p) + helpers * sizeof(pthread_t));

	if (!p)
		return NULL;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->idle, NULL);
	for (; p->nthreads < helpers; p->nthreads++)
		if (thread_start_deaf(&p->threads[p->nthreads], helper_main, p) != 0)
			break; /* fewer helpers only means less parallelism */
	return p;
}

void par_pool_free(struct par_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = 1;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->idle);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

int par_run(struct par_pool *p, size_t n, int (*fn)(void *arg, size_t i), void *arg)
{
	struct par_job job = {.fn = fn, .arg = arg, .n = n};

	atomic_init(&job.claimed, 0);
	atomic_init(&job.rc, 0);
	if (p && p->nthreads > 0 && n > 1) {
		pthread_mutex_lock(&p->lock);
		job.next = p->queue;
		p->queue = &job;
		pthread_cond_signal(&p->work);
		pthread_mutex_unlock(&p->lock);
	}
	job_drain(&job);
	if (p && p->nthreads > 0 && n > 1) {
		/* Every item is claimed: wait only for those a helper is still running. */
		pthread_mutex_lock(&p->lock);
		job_unqueue(p, &job);
		while (job.active > 0)
			pthread_cond_wait(&p->idle, &p->lock);
		pthread_mutex_unlock(&p->lock);
	}
	return atomic_load(&job.rc);
}
