/* Unit tests for volume/fileio tamper and crash handling: damaged, swapped, zeroed or cut chunks,
 * stale final flags, bad headers. */
#include "fileio_fix.h"

/* A flipped chunk byte, swapped chunks or a dropped final chunk fail with -EBADMSG. */
static void test_tamper(void **state)
{
	struct ffix *f = *state;
	uint64_t c = f->vk.geom.size;
	uint8_t *a = malloc(2 * (c + 64)), *b = a + c + 64;

	do_write(f, 0, 3 * c);
	chunk_io(f, 1, a, 0);
	a[50] ^= 1;
	chunk_io(f, 1, a, 1);
	assert_int_equal(fileio_read(f->fd, &f->vk, &f->fc, (char *)f->got, 3 * c, 0), -EBADMSG);
	assert_int_equal(f->fc.bad_chunk, 1);
	assert_int_equal(fileio_read(f->fd, &f->vk, &f->fc, (char *)f->got, c, 0), (ssize_t)c);
	a[50] ^= 1;
	chunk_io(f, 1, a, 1);
	chunk_io(f, 0, b, 0);
	chunk_io(f, 0, a, 1);
	chunk_io(f, 1, b, 1);
	assert_int_equal(fileio_read(f->fd, &f->vk, &f->fc, (char *)f->got, c, 0), -EBADMSG);
	assert_int_equal(f->fc.bad_chunk, 0);
	chunk_io(f, 0, b, 1);
	chunk_io(f, 1, a, 1);
	check_all(f);
	assert_int_equal(ftruncate(f->fd, (off_t)geom_chunk_off(&f->vk.geom, 2)), 0);
	assert_int_equal(fileio_read(f->fd, &f->vk, &f->fc, (char *)f->got, 3 * c, 0), -EBADMSG);
	assert_int_equal(f->fc.bad_chunk, 1);
	/* a tail shorter than a chunk's overhead: read as the whole chunks before it, of which
	 * the last (sealed as a middle chunk) does not open as the end */
	assert_int_equal(ftruncate(f->fd, (off_t)geom_chunk_off(&f->vk.geom, 2) + 1), 0);
	assert_int_equal(fileio_read(f->fd, &f->vk, &f->fc, (char *)f->got, 10, 0), 10);
	assert_int_equal(fileio_read(f->fd, &f->vk, &f->fc, (char *)f->got, 10, c), -EBADMSG);
	free(a);
}

/* An all-zero final chunk is not a hole: zeroing the last chunk is detected. */
static void test_zeroed_final_chunk(void **state)
{
	struct ffix *f = *state;
	uint64_t c = f->vk.geom.size, ovh = f->vk.geom.overhead;
	uint8_t *zero = calloc(1, c + ovh);

	do_write(f, 0, 2 * c + 100);
	assert_int_equal(pwrite(f->fd, zero, 100 + ovh, (off_t)geom_chunk_off(&f->vk.geom, 2)),
			 (ssize_t)(100 + ovh));
	assert_int_equal(fileio_read(f->fd, &f->vk, &f->fc, (char *)f->got, 10, 2 * c), -EBADMSG);
	assert_int_equal(f->fc.bad_chunk, 2);
	free(zero);
}

/* Cutting the backing file down to an empty final chunk is detected by read and by load. */
static void test_cut_to_empty(void **state)
{
	struct ffix *f = *state;

	do_write(f, 0, 3 * f->vk.geom.size + 7);
	assert_int_equal(ftruncate(f->fd, (off_t)geom_backing_size(&f->vk.geom, 0)), 0);
	assert_int_equal(fileio_read(f->fd, &f->vk, &f->fc, (char *)f->got, 100, 0), -EBADMSG);
	fileio_drop(&f->fc);
	assert_int_equal(fileio_load(f->fd, &f->vk, &f->fc), -EBADMSG);
	assert_null(f->fc.dek);
	assert_int_not_equal(f->fc.hdr_err, HDR_OK); /* fileio.h: "reason in fc->hdr_err" */
}

/* A genuinely empty file loads and reads as empty. */
static void test_empty_ok(void **state)
{
	struct ffix *f = *state;

	assert_int_equal(fileio_read(f->fd, &f->vk, &f->fc, (char *)f->got, 100, 0), 0);
	fileio_drop(&f->fc);
	assert_int_equal(fileio_load(f->fd, &f->vk, &f->fc), 0);
	assert_int_equal(f->fc.hdr_err, HDR_OK);
	assert_int_equal(fileio_read(f->fd, &f->vk, &f->fc, (char *)f->got, 100, 0), 0);
}

/* A crash before the old (full) final chunk is re-sealed non-final still reads back. */
static void test_crash_stale_final_flag(void **state)
{
	struct ffix *f = *state;
	uint64_t c = f->vk.geom.size;
	uint8_t *old = malloc(c + 64);

	do_write(f, 0, c);
	chunk_io(f, 0, old, 0);
	do_write(f, c, 10);
	chunk_io(f, 0, old, 1); /* chunk 0 back to its final-flagged seal */
	check_all(f);
	do_write(f, c + 10, 2 * c); /* and it can be rewritten around */
	check_all(f);
	free(old);
}

/* A damaged header, an impossible size or a short file make fileio_load fail with a reason;
 * a torn tail (a crash's) loads, and is trimmed. */
static void test_load_bad_header(void **state)
{
	struct ffix *f = *state;
	uint8_t byte;

	do_write(f, 0, f->vk.geom.size);
	fileio_drop(&f->fc);
	assert_int_equal(pwrite(f->fd, "", 1, (off_t)geom_backing_size(&f->vk.geom, f->ref_size)),
			 1);
	/* one byte after the last whole chunk: a torn tail, trimmed by a read-write load */
	assert_int_equal(fileio_load(f->fd, &f->vk, &f->fc), 0);
	assert_int_equal(lseek(f->fd, 0, SEEK_END),
			 (off_t)geom_backing_size(&f->vk.geom, f->ref_size));
	fileio_drop(&f->fc);
	/* cut inside the first chunk's overhead: no size a crash leaves */
	assert_int_equal(ftruncate(f->fd, HEADER_LEN + 5), 0);
	assert_int_equal(fileio_load(f->fd, &f->vk, &f->fc), -EBADMSG);
	assert_int_equal(f->fc.hdr_err, HDR_ERR_SIZE);
	assert_null(f->fc.dek);
	assert_int_equal(pread(f->fd, &byte, 1, 8), 1);
	byte ^= 1;
	assert_int_equal(pwrite(f->fd, &byte, 1, 8), 1);
	assert_int_equal(fileio_load(f->fd, &f->vk, &f->fc), -EBADMSG);
	assert_int_equal(f->fc.hdr_err, HDR_ERR_AUTH);
	assert_null(f->fc.dek);
	assert_int_equal(pwrite(f->fd, "X", 1, 0), 1);
	assert_int_equal(fileio_load(f->fd, &f->vk, &f->fc), -EBADMSG);
	assert_int_equal(f->fc.hdr_err, HDR_ERR_MAGIC);
	assert_int_equal(ftruncate(f->fd, 100), 0);
	assert_int_equal(fileio_load(f->fd, &f->vk, &f->fc), -EBADMSG);
	assert_int_equal(f->fc.hdr_err, HDR_ERR_CORRUPT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    X(test_tamper),
	    G(test_tamper),
	    X(test_zeroed_final_chunk),
	    G(test_zeroed_final_chunk),
	    X(test_cut_to_empty),
	    G(test_cut_to_empty),
	    X(test_crash_stale_final_flag),
	    G(test_crash_stale_final_flag),
	    X(test_load_bad_header),
	    X(test_empty_ok),
	    G(test_empty_ok),
	};

	if (secmem_init() != 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
