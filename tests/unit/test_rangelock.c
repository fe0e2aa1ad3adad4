/* Unit tests for volume/rangelock: overlapping writers exclude each other and readers; others not.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "testutil.h"

#include "../../volume/rangelock.h"

#define THREADS 4
#define ROUNDS 2000

static struct range_lock lock;
static long counter[8];	      /* one per chunk, updated without atomics by writers */
static atomic_int writing[8]; /* writers inside each chunk */
static atomic_int torn_reads;

/* Shared holds of one range, and write holds of disjoint ranges, are all held at once. */
static void test_compatible_holds(void **state)
{
	struct range_hold a, b, c, d;

	(void)state;
	range_lock_init(&lock);
	range_lock_acquire(&lock, &a, 0, 9, 0);
	range_lock_acquire(&lock, &b, 0, 9, 0); /* would wait forever if reads conflicted */
	range_lock_acquire(&lock, &c, 10, 19, 1);
	range_lock_acquire(&lock, &d, 20, 20, 1);
	range_lock_release(&lock, &b);
	range_lock_release(&lock, &a);
	range_lock_release(&lock, &d);
	range_lock_release(&lock, &c);
	assert_null(lock.held);
	range_lock_destroy(&lock);
}

/* Each writer read-modify-writes the counters of a range of chunks that overlaps the others'. */
static void *writer(void *arg)
{
	uint64_t first = (uintptr_t)arg % 4;

	for (int r = 0; r < ROUNDS; r++) {
		struct range_hold h;
		uint64_t last = first + (uint64_t)(r % 4);

		range_lock_acquire(&lock, &h, first, last, 1);
		for (uint64_t i = first; i <= last; i++) {
			long v = counter[i];

			atomic_fetch_add(&writing[i], 1);
			sched_yield(); /* widen the window a missing lock would lose updates in */
			counter[i] = v + 1;
			atomic_fetch_sub(&writing[i], 1);
		}
		range_lock_release(&lock, &h);
	}
	return NULL;
}

/* Readers must never see a writer inside a chunk they hold. */
static void *reader(void *arg)
{
	(void)arg;
	for (int r = 0; r < ROUNDS; r++) {
		struct range_hold h;
		uint64_t first = (uint64_t)r % 8, last = first + 1 < 8 ? first + 1 : first;

		range_lock_acquire(&lock, &h, first, last, 0);
		for (uint64_t i = first; i <= last; i++)
			if (atomic_load(&writing[i]) != 0)
				atomic_fetch_add(&torn_reads, 1);
		range_lock_release(&lock, &h);
	}
	return NULL;
}

/* No update is lost and no reader overlaps a writer, with four writers and two readers. */
static void test_overlapping_writers_and_readers(void **state)
{
	pthread_t w[THREADS], rd[2];
	long want[8] = {0};

	(void)state;
	range_lock_init(&lock);
	for (uintptr_t i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&w[i], NULL, writer, (void *)i), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&rd[i], NULL, reader, NULL), 0);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(w[i], NULL), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(rd[i], NULL), 0);
	for (uint64_t t = 0; t < THREADS; t++)
		for (int r = 0; r < ROUNDS; r++)
			for (uint64_t i = t % 4; i <= t % 4 + (uint64_t)(r % 4); i++)
				want[i]++;
	assert_memory_equal(counter, want, sizeof(want));
	assert_int_equal(atomic_load(&torn_reads), 0);
	assert_null(lock.held);
	range_lock_destroy(&lock);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_compatible_holds),
	    cmocka_unit_test(test_overlapping_writers_and_readers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
