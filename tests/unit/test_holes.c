/* Unit tests for volume/holes: the chunk arithmetic of punched and zeroed ranges. */
#include <stdint.h>

#include "testutil.h"

#include "../../crypto/aead.h"
#include "../../volume/holes.h"

/* One plan against what it must be: its parts are contiguous, cover exactly the range clamped
 * to the size, deallocate only whole chunks, and never the file's final chunk. */
static void check_plan(const struct chunk_geom *g, uint64_t size, uint64_t off, uint64_t len)
{
	uint64_t end = off + len < size ? off + len : size, last = geom_nchunks(g, size) - 1;
	struct hole_plan p;

	hole_plan_make(g, size, off, len, &p);
	if (off >= end) {
		assert_true(p.head_len == 0 && p.count == 0 && p.tail_len == 0);
		return;
	}
	assert_int_equal(p.head_off, off);
	if (p.count == 0) {
		assert_int_equal(p.head_len, end - off);
		assert_int_equal(p.tail_len, 0);
		assert_true((off + g->size - 1) / g->size >=
			    (end / g->size < last ? end / g->size : last));
		return;
	}
	assert_int_equal(p.head_off + p.head_len, p.first * g->size);
	assert_true(p.head_len < g->size);
	assert_true(p.first + p.count <= last); /* the final chunk is never deallocated */
	assert_int_equal(p.tail_off, (p.first + p.count) * g->size);
	assert_int_equal(p.tail_off + p.tail_len, end);
	assert_true(p.tail_len < g->size || p.first + p.count == last);
}

/* Every offset and length over files of 0 to 6 chunks and a few bytes, both ciphers. */
static void test_hole_plan_every_alignment(void **state)
{
	static const int ciphers[] = {AEAD_XCHACHA20_POLY1305, AEAD_AES256_GCM};
	struct chunk_geom g;
	unsigned checked = 0;

	(void)state;
	for (size_t c = 0; c < 2; c++) {
		geom_init(&g, ciphers[c], 9);
		for (uint64_t size = 0; size <= 6 * g.size + 3; size += 37)
			for (uint64_t off = 0; off <= size + g.size; off += 13)
				for (uint64_t len = 1; len <= size + 2 * g.size; len += 29, checked++)
					check_plan(&g, size, off, len);
	}
	assert_true(checked > 100000);
}

/* Ranges that end exactly at chunk boundaries and at the end of the file. */
static void test_hole_plan_boundaries(void **state)
{
	struct chunk_geom g;
	struct hole_plan p;

	(void)state;
	geom_init(&g, AEAD_XCHACHA20_POLY1305, 12);
	hole_plan_make(&g, 10 * g.size, 2 * g.size, 3 * g.size, &p);
	assert_true(p.head_len == 0 && p.first == 2 && p.count == 3 && p.tail_len == 0);
	hole_plan_make(&g, 10 * g.size, 8 * g.size, 2 * g.size, &p); /* up to the end */
	assert_true(p.first == 8 && p.count == 1 && p.tail_off == 9 * g.size &&
		    p.tail_len == g.size);
	hole_plan_make(&g, 10 * g.size, 0, ~0ULL - 5, &p); /* to the end */
	assert_true(p.first == 0 && p.count == 9 && p.tail_len == g.size);
	hole_plan_make(&g, 10 * g.size, 5, ~0ULL, &p); /* off + len wraps around */
	assert_true(p.head_len == g.size - 5 && p.first == 1 && p.count == 8);
	hole_plan_make(&g, 10 * g.size, 11 * g.size, g.size, &p); /* past the end */
	assert_true(p.head_len == 0 && p.count == 0 && p.tail_len == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hole_plan_every_alignment),
	    cmocka_unit_test(test_hole_plan_boundaries),
	};

	if (secmem_init() != 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
