/* Unit tests for format/chunk: size arithmetic and the chunk codec's AAD binding. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "../../crypto/aead.h"
#include "../../format/chunk.h"

static const int ciphers[] = {AEAD_XCHACHA20_POLY1305, AEAD_AES256_GCM};
static const unsigned shifts[] = {9, 12};

/* Checks one plain size against the closed-form layout and the inverse mapping. */
static void check_plain(const struct chunk_geom *g, uint64_t plain)
{
	uint64_t want_n = plain == 0 ? 1 : (plain + g->size - 1) / g->size, back = ~0ULL;
	uint64_t backing = geom_backing_size(g, plain);

	assert_int_equal(geom_nchunks(g, plain), want_n);
	assert_int_equal(backing, HEADER_LEN + want_n * g->overhead + plain);
	assert_int_equal(geom_plain_size(g, backing, &back), 0);
	assert_int_equal(back, plain);
	/* The last chunk starts where the layout says and ends exactly at the file's end. */
	assert_true(geom_chunk_off(g, want_n - 1) < backing);
	assert_int_equal(backing - geom_chunk_off(g, want_n - 1),
			 plain - (want_n - 1) * g->size + g->overhead);
}

/* geom_* round-trip for every plain size 0..3C+5 and large ones, each chunk size and cipher. */
static void test_geom_round_trip(void **state)
{
	static const uint64_t big[] = {(1ULL << 40) - 1, 1ULL << 40, (1ULL << 40) + 3,
				       (1ULL << 50) + 12345};
	struct chunk_geom g;

	(void)state;
	for (size_t c = 0; c < 2; c++) {
		for (size_t s = 0; s < 2; s++) {
			geom_init(&g, ciphers[c], shifts[s]);
			assert_int_equal(g.size, 1ULL << shifts[s]);
			assert_int_equal(g.overhead, aead_overhead(ciphers[c]));
			for (uint64_t p = 0; p <= 3 * g.size + 5; p++)
				check_plain(&g, p);
			for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++)
				check_plain(&g, big[i]);
		}
	}
}

/* Valid backing sizes and plain sizes are in bijection: every other size is -EIO. */
static void test_geom_every_backing_size(void **state)
{
	struct chunk_geom g;

	(void)state;
	for (size_t c = 0; c < 2; c++) {
		uint64_t next = 0, valid = 0, plain;

		geom_init(&g, ciphers[c], 9);
		for (uint64_t b = 0; b <= geom_backing_size(&g, 3 * g.size + 5); b++) {
			int rc = geom_plain_size(&g, b, &plain);

			if (b == geom_backing_size(&g, next)) {
				assert_int_equal(rc, 0);
				assert_int_equal(plain, next);
				next++;
				valid++;
			} else {
				assert_int_equal(rc, -EIO);
			}
		}
		assert_int_equal(valid, 3 * g.size + 6);
	}
}

/* For every budget of backing bytes, the capacity is the largest plaintext that fits. */
static void test_geom_plain_capacity(void **state)
{
	struct chunk_geom g;

	(void)state;
	for (size_t c = 0; c < 2; c++) {
		geom_init(&g, ciphers[c], 9);
		assert_int_equal(geom_plain_capacity(&g, HEADER_LEN + g.overhead - 1), 0);
		for (uint64_t b = HEADER_LEN + g.overhead; b <= geom_backing_size(&g, 4 * g.size + 9);
		     b++) {
			uint64_t cap = geom_plain_capacity(&g, b);

			assert_true(geom_backing_size(&g, cap) <= b);
			assert_true(geom_backing_size(&g, cap + 1) > b);
		}
	}
}

/* Backing sizes that no file can have are refused with -EIO. */
static void test_geom_invalid(void **state)
{
	struct chunk_geom g;
	uint64_t plain = 77;

	(void)state;
	for (size_t c = 0; c < 2; c++) {
		for (size_t s = 0; s < 2; s++) {
			uint64_t stored, ovh;

			geom_init(&g, ciphers[c], shifts[s]);
			stored = g.size + g.overhead;
			ovh = g.overhead;
			assert_int_equal(geom_plain_size(&g, 0, &plain), -EIO);
			assert_int_equal(geom_plain_size(&g, HEADER_LEN, &plain), -EIO);
			assert_int_equal(geom_plain_size(&g, HEADER_LEN + ovh - 1, &plain), -EIO);
			/* A trailing partial chunk shorter than nonce + tag. */
			assert_int_equal(geom_plain_size(&g, HEADER_LEN + stored + 1, &plain),
					 -EIO);
			assert_int_equal(
			    geom_plain_size(&g, HEADER_LEN + 2 * stored + ovh - 1, &plain), -EIO);
			/* An empty chunk after full ones: a final chunk never holds 0 bytes then.
			 */
			assert_int_equal(geom_plain_size(&g, HEADER_LEN + stored + ovh, &plain),
					 -EIO);
			assert_int_equal(geom_plain_size(&g, HEADER_LEN + 3 * stored + ovh, &plain),
					 -EIO);
			assert_int_equal(plain, 77); /* untouched on error */
			/* But an empty only chunk is the empty file. */
			assert_int_equal(geom_plain_size(&g, HEADER_LEN + ovh, &plain), 0);
			assert_int_equal(plain, 0);
			plain = 77;
		}
	}
}

/* Chunk offsets are header + idx full stored chunks. */
static void test_geom_chunk_off(void **state)
{
	struct chunk_geom g;

	(void)state;
	geom_init(&g, AEAD_XCHACHA20_POLY1305, 12);
	assert_int_equal(geom_chunk_off(&g, 0), 256);
	assert_int_equal(geom_chunk_off(&g, 1), 256 + 4096 + 40);
	assert_int_equal(geom_chunk_off(&g, 1ULL << 30), 256 + (1ULL << 30) * 4136);
	geom_init(&g, AEAD_AES256_GCM, 9);
	assert_int_equal(geom_chunk_off(&g, 3), 256 + 3 * (512 + 28));
}

struct chunk_fix {
	struct chunk_geom g;
	uint8_t dek[DEK_LEN], id[FILE_ID_LEN], pt[4096], out[4096 + AEAD_MAX_OVERHEAD];
	uint8_t back[4096];
};

/* Opens fx->out (len plain bytes) with the given binding; on failure back must be zeros. */
static int open_as(struct chunk_fix *fx, const uint8_t *id, uint64_t idx, int final, size_t len)
{
	int rc;

	memset(fx->back, 0xAA, sizeof(fx->back));
	rc = chunk_open(&fx->g, fx->dek, id, idx, final, fx->out, len + fx->g.overhead, fx->back);
	if (rc == 0)
		assert_memory_equal(fx->back, fx->pt, len);
	else
		for (size_t i = 0; i < len; i++)
			assert_int_equal(fx->back[i], 0);
	return rc;
}

/* A sealed chunk opens only with its own index, final flag, file id and DEK. */
static void test_chunk_binding(void **state)
{
	struct chunk_fix *fx = calloc(1, sizeof(*fx));
	static const size_t lens[] = {0, 1, 300, 4096};

	(void)state;
	assert_non_null(fx);
	randombytes_buf(fx->dek, DEK_LEN);
	randombytes_buf(fx->id, FILE_ID_LEN);
	randombytes_buf(fx->pt, sizeof(fx->pt));
	for (size_t c = 0; c < 2; c++) {
		geom_init(&fx->g, ciphers[c], 12);
		for (size_t i = 0; i < 4; i++) {
			uint64_t idx = 5;
			int final = i & 1;
			uint8_t other[FILE_ID_LEN];

			assert_int_equal(chunk_seal(&fx->g, fx->dek, fx->id, idx, final, fx->pt,
						    lens[i], fx->out),
					 0);
			assert_int_equal(open_as(fx, fx->id, idx, final, lens[i]), 0);
			assert_int_equal(open_as(fx, fx->id, idx - 1, final, lens[i]), -EBADMSG);
			assert_int_equal(open_as(fx, fx->id, idx + 1, final, lens[i]), -EBADMSG);
			assert_int_equal(open_as(fx, fx->id, idx + (1ULL << 32), final, lens[i]),
					 -EBADMSG);
			assert_int_equal(open_as(fx, fx->id, idx, !final, lens[i]), -EBADMSG);
			memcpy(other, fx->id, FILE_ID_LEN);
			other[FILE_ID_LEN - 1] ^= 1;
			assert_int_equal(open_as(fx, other, idx, final, lens[i]), -EBADMSG);
			fx->dek[0] ^= 1;
			assert_int_equal(open_as(fx, fx->id, idx, final, lens[i]), -EBADMSG);
			fx->dek[0] ^= 1;
		}
	}
	free(fx);
}

/* Oversized plaintexts are refused at seal; impossible stored lengths at open. */
static void test_chunk_lengths(void **state)
{
	struct chunk_fix *fx = calloc(1, sizeof(*fx));

	(void)state;
	assert_non_null(fx);
	geom_init(&fx->g, AEAD_XCHACHA20_POLY1305, 9);
	assert_int_equal(chunk_seal(&fx->g, fx->dek, fx->id, 0, 1, fx->pt, 513, fx->out), -EINVAL);
	assert_int_equal(chunk_seal(&fx->g, fx->dek, fx->id, 0, 1, fx->pt, 512, fx->out), 0);
	assert_int_equal(chunk_open(&fx->g, fx->dek, fx->id, 0, 1, fx->out, 552, fx->back), 0);
	assert_int_equal(chunk_open(&fx->g, fx->dek, fx->id, 0, 1, fx->out, 553, fx->back),
			 -EBADMSG);
	assert_int_equal(chunk_open(&fx->g, fx->dek, fx->id, 0, 1, fx->out, 39, fx->back),
			 -EBADMSG);
	assert_int_equal(chunk_open(&fx->g, fx->dek, fx->id, 0, 1, fx->out, 551, fx->back),
			 -EBADMSG);
	free(fx);
}

/* chunk_is_hole is 1 exactly for all-zero input (and empty input); sealed chunks are not holes. */
static void test_chunk_is_hole(void **state)
{
	struct chunk_fix *fx = calloc(1, sizeof(*fx));
	uint8_t buf[600] = {0};

	(void)state;
	assert_non_null(fx);
	assert_int_equal(chunk_is_hole(buf, 0), 1);
	assert_int_equal(chunk_is_hole(buf, sizeof(buf)), 1);
	for (size_t i = 0; i < sizeof(buf); i++) {
		buf[i] = (uint8_t)(1u << (i % 8));
		assert_int_equal(chunk_is_hole(buf, sizeof(buf)), 0);
		assert_int_equal(chunk_is_hole(buf, i), 1);
		buf[i] = 0;
	}
	geom_init(&fx->g, AEAD_AES256_GCM, 9);
	assert_int_equal(chunk_seal(&fx->g, fx->dek, fx->id, 0, 0, buf, 512, fx->out), 0);
	assert_int_equal(chunk_is_hole(fx->out, 512 + 28), 0);
	free(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_geom_round_trip), cmocka_unit_test(test_geom_every_backing_size),
	    cmocka_unit_test(test_geom_invalid),    cmocka_unit_test(test_geom_chunk_off),
	    cmocka_unit_test(test_chunk_binding),   cmocka_unit_test(test_chunk_lengths),
	    cmocka_unit_test(test_chunk_is_hole),   cmocka_unit_test(test_geom_plain_capacity),
	};

	if (secmem_init() != 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
