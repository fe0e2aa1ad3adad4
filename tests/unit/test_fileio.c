/* Unit tests for volume/fileio on a plain temp file: a model-checked random op sequence, holes,
 * reload, re-keying on truncate to 0, and a growing write that fails part-way. */
#include <signal.h>
#include <sys/resource.h>
#include <sys/xattr.h>

#include "fileio_fix.h"

#include "../../format/objcrypt.h"

/* A write offset: anywhere in the file, at a chunk boundary, or past the end (a hole). */
static uint64_t pick_off(struct ffix *f)
{
	uint64_t c = f->vk.geom.size, k = rnd(f, 10);

	if (k < 5)
		return rnd(f, f->ref_size + 1);
	if (k < 8) {
		uint64_t base = rnd(f, f->ref_size / c + 2) * c, d = rnd(f, 3);

		return base >= d ? base - d : base;
	}
	return f->ref_size + rnd(f, 8 * c);
}

static uint64_t pick_len(struct ffix *f)
{
	uint64_t c = f->vk.geom.size, k = rnd(f, 10);

	return 1 + (k < 3 ? rnd(f, 16) : k < 8 ? rnd(f, 2 * c + 3) : rnd(f, 6 * c));
}

static uint64_t pick_size(struct ffix *f)
{
	uint64_t c = f->vk.geom.size, k = rnd(f, 10);

	if (k == 0)
		return 0;
	if (k < 4)
		return rnd(f, f->ref_size + 1);
	if (k < 7)
		return min_u64(f->max, f->ref_size + rnd(f, 4 * c));
	return rnd(f, f->max / 2);
}

/* One random op: write, truncate, partial read, or drop + reload of the DEK. */
static void random_op(struct ffix *f)
{
	uint64_t k = rnd(f, 100), off, len;

	if (k < 50) {
		off = pick_off(f);
		len = pick_len(f);
		if (off >= f->max)
			off = rnd(f, f->max);
		do_write(f, off, min_u64(len, f->max - off));
	} else if (k < 75) {
		do_truncate(f, pick_size(f));
	} else if (k < 98) {
		do_read(f, rnd(f, f->ref_size + 20), rnd(f, 3 * f->vk.geom.size));
		return;
	} else {
		fileio_drop(&f->fc);
		assert_int_equal(fileio_load(f->fd, &f->vk, &f->fc), 0);
	}
	check_all(f);
}

/* A few thousand seeded random writes/truncates/reads match an in-memory model throughout. */
static void run_random(struct ffix *f, uint64_t seed, uint64_t nops)
{
	f->rng = seed;
	check_all(f);
	for (uint64_t i = 0; i < nops; i++)
		random_op(f);
	fileio_drop(&f->fc);
	assert_int_equal(fileio_load(f->fd, &f->vk, &f->fc), 0);
	check_all(f);
}

/* Model check, XChaCha20-Poly1305 with 512-byte chunks. */
static void test_random_x512(void **state)
{
	run_random(*state, 0x9E3779B97F4A7C15ULL, 2500);
}

/* Model check, AES-256-GCM with 4096-byte chunks. */
static void test_random_g4096(void **state)
{
	run_random(*state, 0xD1B54A32D192ED03ULL, 1200);
}

/* Model check with helper threads: whole-file reads span several batches of chunks. */
static void test_random_x512_parallel(void **state)
{
	run_random(*state, 0x2545F4914F6CDD1DULL, 1500);
}

/* Writes of 17 to 47 chunks at unaligned offsets are sealed by several threads, and read
 * back whole and in part; a tampered chunk in the middle of a large read is reported. */
static void test_parallel_large_io(void **state)
{
	struct ffix *f = *state;
	uint64_t c = f->vk.geom.size;
	uint8_t stored[512 + 64];

	f->rng = 0x853C49E6748FEA9BULL;
	for (int k = 0; k < 40; k++) {
		uint64_t len = (17 + rnd(f, 30)) * c - rnd(f, c), off = rnd(f, f->max - len);

		do_write(f, off, len);
		check_all(f);
		do_read(f, rnd(f, c), f->max - 2 * c + rnd(f, c));
	}
	chunk_io(f, 30, stored, 0);
	stored[100] ^= 1;
	chunk_io(f, 30, stored, 1);
	assert_int_equal(fileio_read(f->fd, &f->vk, &f->fc, (char *)f->got, f->max, 0), -EBADMSG);
	assert_int_equal(f->fc.bad_chunk, 30);
}

/* A write 100 MiB past the end leaves the gap sparse and reading as zeros. */
static void test_sparse_hole(void **state)
{
	struct ffix *f = *state;
	uint64_t size = 0;
	struct stat st;
	char buf[5000];

	assert_int_equal(fileio_write(f->fd, &f->vk, &f->fc, "head", 4, 0), 4);
	assert_int_equal(fileio_write(f->fd, &f->vk, &f->fc, "x", 1, 100 * MIB), 1);
	assert_int_equal(fileio_size(f->fd, &f->vk.geom, &size), 0);
	assert_int_equal(size, 100 * MIB + 1);
	assert_int_equal(fstat(f->fd, &st), 0);
	assert_int_equal((uint64_t)st.st_size, geom_backing_size(&f->vk.geom, 100 * MIB + 1));
	assert_true((uint64_t)st.st_blocks * 512 < MIB);
	memset(buf, 0x55, sizeof(buf));
	assert_int_equal(fileio_read(f->fd, &f->vk, &f->fc, buf, sizeof(buf), 50 * MIB + 7), 5000);
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0);
	assert_int_equal(fileio_read(f->fd, &f->vk, &f->fc, buf, 10, 100 * MIB - 1), 2);
	assert_memory_equal(buf, "\0x", 2);
	assert_int_equal(fileio_read(f->fd, &f->vk, &f->fc, buf, 10, 0), 10);
	assert_memory_equal(buf, "head\0\0\0\0\0\0", 10);
	assert_int_equal(fileio_truncate(f->fd, &f->vk, &f->fc, 200 * MIB), 0);
	assert_int_equal(fstat(f->fd, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 < MIB);
	assert_int_equal(fileio_read(f->fd, &f->vk, &f->fc, buf, 10, 100 * MIB - 1), 10);
	assert_memory_equal(buf, "\0x\0\0\0\0\0\0\0\0", 10);
}

/* Dropping the DEK and reloading from the header gives the same file id and contents. */
static void test_reload(void **state)
{
	struct ffix *f = *state;
	uint8_t id[FILE_ID_LEN];

	do_write(f, 100, 3 * f->vk.geom.size);
	do_write(f, 9 * f->vk.geom.size + 5, 17);
	memcpy(id, f->fc.hdr.file_id, FILE_ID_LEN);
	fileio_drop(&f->fc);
	assert_null(f->fc.dek);
	assert_int_equal(fileio_read(f->fd, &f->vk, &f->fc, (char *)f->got, 10, 0), -EIO);
	assert_int_equal(fileio_write(f->fd, &f->vk, &f->fc, "z", 1, 0), -EIO);
	assert_int_equal(fileio_truncate(f->fd, &f->vk, &f->fc, 1), -EIO);
	memset(&f->fc, 0, sizeof(f->fc));
	assert_int_equal(fileio_load(f->fd, &f->vk, &f->fc), 0);
	assert_memory_equal(f->fc.hdr.file_id, id, FILE_ID_LEN);
	check_all(f);
}

/* Truncating to 0 gives a new file id and DEK (on disk too) and re-seals user xattrs. */
static void test_truncate_zero_rekeys(void **state)
{
	struct ffix *f = *state;
	uint8_t id[FILE_ID_LEN], dek[DEK_LEN], hdr[HEADER_LEN], val[5 + OBJ_OVERHEAD], out[5];
	int have_xattr;

	do_write(f, 0, 1000);
	memcpy(id, f->fc.hdr.file_id, FILE_ID_LEN);
	memcpy(dek, f->fc.dek, DEK_LEN);
	assert_int_equal(xattr_seal(f->fc.dek, id, "user.k", "hello", 5, val), 0);
	have_xattr = fsetxattr(f->fd, "user.k", val, sizeof(val), 0) == 0;
	do_truncate(f, 0);
	assert_memory_not_equal(f->fc.hdr.file_id, id, FILE_ID_LEN);
	assert_memory_not_equal(f->fc.dek, dek, DEK_LEN);
	assert_int_equal(pread(f->fd, hdr, HEADER_LEN, 0), HEADER_LEN);
	assert_memory_equal(hdr + 8, f->fc.hdr.file_id, FILE_ID_LEN);
	check_all(f);
	if (have_xattr) {
		assert_int_equal(fgetxattr(f->fd, "user.k", val, sizeof(val)), sizeof(val));
		assert_int_equal(xattr_open(dek, id, "user.k", val, sizeof(val), out), -EBADMSG);
		assert_int_equal(
		    xattr_open(f->fc.dek, f->fc.hdr.file_id, "user.k", val, sizeof(val), out), 0);
		assert_memory_equal(out, "hello", 5);
	}
	memcpy(id, f->fc.hdr.file_id, FILE_ID_LEN);
	fileio_drop(&f->fc);
	assert_int_equal(fileio_load(f->fd, &f->vk, &f->fc), 0);
	assert_memory_equal(f->fc.hdr.file_id, id, FILE_ID_LEN);
	do_write(f, 3, 10);
	check_all(f);
}

/* Truncating an empty file to 0 leaves its backing bytes alone: a crash then has no window
 * in which the file is 0 bytes on disk and refuses to open. */
static void test_truncate_empty_is_a_noop(void **state)
{
	struct ffix *f = *state;
	uint8_t before[HEADER_LEN], after[HEADER_LEN];

	do_truncate(f, 0);
	assert_int_equal(pread(f->fd, before, HEADER_LEN, 0), HEADER_LEN);
	do_truncate(f, 0);
	assert_int_equal(pread(f->fd, after, HEADER_LEN, 0), HEADER_LEN);
	assert_memory_equal(before, after, HEADER_LEN);
	check_all(f);
}

/* A growing write that fails part-way (RLIMIT_FSIZE stands in for a full disk) leaves the
 * file exactly as it was, its last partial chunk included; the same write works later. */
static void test_failed_growth_leaves_file_as_it_was(void **state)
{
	struct ffix *f = *state;
	size_t len = 20 * f->vk.geom.size;
	char *data = malloc(len);
	struct rlimit old, lim;
	struct stat st;
	ssize_t rc;

	do_write(f, 0, 5 * f->vk.geom.size + 100);
	assert_int_equal(fstat(f->fd, &st), 0);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)st.st_size + 100;
	signal(SIGXFSZ, SIG_IGN);
	randombytes_buf(data, len);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	rc = fileio_write(f->fd, &f->vk, &f->fc, data, len, 0);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_int_equal(rc, -EFBIG);
	check_all(f);
	free(data);
	do_write(f, 0, len);
	check_all(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    X(test_random_x512),
	    P(test_random_x512_parallel),
	    P(test_parallel_large_io),
	    G(test_random_g4096),
	    X(test_sparse_hole),
	    G(test_sparse_hole),
	    X(test_reload),
	    G(test_reload),
	    X(test_truncate_zero_rekeys),
	    G(test_truncate_zero_rekeys),
	    X(test_truncate_empty_is_a_noop),
	    X(test_failed_growth_leaves_file_as_it_was),
	    G(test_failed_growth_leaves_file_as_it_was),
	};

	if (secmem_init() != 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
