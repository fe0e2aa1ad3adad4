/* Unit tests for crypto/secmem's key slots: distinct, zeroed, wiped on free, thread-safe. */
#include <pthread.h>

#include "testutil.h"

#include "../../crypto/secmem.h"

#define NKEYS 600 /* more than one slab of slots */

/* Slots never overlap, start zeroed, and come back zeroed after use. */
static void test_key_slots(void **state)
{
	static uint8_t *keys[NKEYS];
	static const uint8_t zero[SECMEM_KEY_LEN];

	(void)state;
	for (size_t i = 0; i < NKEYS; i++) {
		keys[i] = secmem_key_alloc();
		assert_non_null(keys[i]);
		assert_memory_equal(keys[i], zero, SECMEM_KEY_LEN);
		memset(keys[i], (int)(i % 255) + 1, SECMEM_KEY_LEN);
	}
	for (size_t i = 0; i < NKEYS; i++)
		for (size_t b = 0; b < SECMEM_KEY_LEN; b++)
			assert_int_equal(keys[i][b], (i % 255) + 1);
	for (size_t i = 0; i < NKEYS; i++)
		secmem_key_free(keys[i]);
	for (size_t i = 0; i < NKEYS; i++) { /* every slot is reused, and wiped */
		keys[i] = secmem_key_alloc();
		assert_memory_equal(keys[i], zero, SECMEM_KEY_LEN);
	}
	for (size_t i = 0; i < NKEYS; i++)
		secmem_key_free(keys[i]);
	secmem_key_free(NULL);
}

static void *churn(void *arg)
{
	uint8_t mark = (uint8_t)(uintptr_t)arg;

	for (int i = 0; i < 20000; i++) {
		uint8_t *k = secmem_key_alloc();

		if (!k)
			return (void *)1;
		memset(k, mark, SECMEM_KEY_LEN);
		for (size_t b = 0; b < SECMEM_KEY_LEN; b++)
			if (k[b] != mark)
				return (void *)1; /* another thread holds the same slot */
		secmem_key_free(k);
	}
	return NULL;
}

/* Four threads allocating and freeing at once never share a slot. */
static void test_key_slots_threads(void **state)
{
	pthread_t t[4];
	void *ret;

	(void)state;
	for (uintptr_t i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, churn, (void *)(i + 1)), 0);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], &ret), 0);
		assert_null(ret);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_key_slots),
	    cmocka_unit_test(test_key_slots_threads),
	};

	assert_int_equal(secmem_init(), 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
