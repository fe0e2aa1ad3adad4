/* Fixture for the fileio tests: a volume, an open backing temp file and an in-memory model. */
#ifndef KEKFS_FILEIO_FIX_H
#define KEKFS_FILEIO_FIX_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#include "../../crypto/aead.h"
#include "../../volume/fileio.h"

#define MIB (1ULL << 20)

struct ffix {
	struct test_env *env;
	struct volume_keys vk;
	struct file_crypt fc;
	int fd;
	uint8_t *ref, *got; /* model contents (zero past ref_size) and read-back buffer */
	uint64_t ref_size, max;
	uint64_t rng;
};

static inline int fix_new(void **state, int cipher, unsigned shift)
{
	struct ffix *f = calloc(1, sizeof(*f));
	char path[128];

	f->env = env_new(cipher, shift);
	f->vk.vol = &f->env->vol;
	f->vk.kr = f->env->kr;
	geom_init(&f->vk.geom, cipher, shift);
	f->max = 48 * f->vk.geom.size;
	f->ref = calloc(1, f->max + 1);
	f->got = calloc(1, f->max + 64);
	path_join(path, sizeof(path), f->env->dir, "file");
	f->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(f->fd >= 0);
	assert_int_equal(fileio_create(f->fd, &f->vk, &f->fc), 0);
	*state = f;
	return 0;
}

static inline int setup_x512(void **state)
{
	return fix_new(state, AEAD_XCHACHA20_POLY1305, 9);
}

/* XChaCha, 512-byte chunks, and two helper threads for the chunk crypto of large requests. */
static inline int setup_x512_pool(void **state)
{
	fix_new(state, AEAD_XCHACHA20_POLY1305, 9);
	((struct ffix *)*state)->vk.pool = par_pool_new(2);
	assert_non_null(((struct ffix *)*state)->vk.pool);
	return 0;
}

static inline int setup_g4096(void **state)
{
	return fix_new(state, AEAD_AES256_GCM, 12);
}

static inline int teardown(void **state)
{
	struct ffix *f = *state;

	fileio_drop(&f->fc);
	par_pool_free(f->vk.pool);
	close(f->fd);
	env_free(f->env);
	free(f->ref);
	free(f->got);
	free(f);
	return 0;
}

static inline uint64_t rnd(struct ffix *f, uint64_t bound)
{
	f->rng ^= f->rng << 13;
	f->rng ^= f->rng >> 7;
	f->rng ^= f->rng << 17;
	return bound ? f->rng % bound : 0;
}

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* Size, backing size and the whole plaintext agree with the model. */
static inline void check_all(struct ffix *f)
{
	uint64_t size = ~0ULL;
	struct stat st;

	assert_int_equal(fileio_size(f->fd, &f->vk.geom, &size), 0);
	assert_int_equal(size, f->ref_size);
	assert_int_equal(fstat(f->fd, &st), 0);
	assert_int_equal((uint64_t)st.st_size, geom_backing_size(&f->vk.geom, f->ref_size));
	memset(f->got, 0xA5, f->max + 64);
	assert_int_equal(fileio_read(f->fd, &f->vk, &f->fc, (char *)f->got, f->max + 64, 0),
			 (ssize_t)f->ref_size);
	assert_memory_equal(f->got, f->ref, f->ref_size);
	assert_int_equal(f->got[f->ref_size], 0xA5);
}

static inline void do_write(struct ffix *f, uint64_t off, uint64_t len)
{
	uint8_t *data = malloc(len + 1);

	randombytes_buf(data, len);
	assert_int_equal(fileio_write(f->fd, &f->vk, &f->fc, (const char *)data, len, off),
			 (ssize_t)len);
	memcpy(f->ref + off, data, len);
	if (off + len > f->ref_size)
		f->ref_size = off + len;
	free(data);
}

static inline void do_truncate(struct ffix *f, uint64_t size)
{
	assert_int_equal(fileio_truncate(f->fd, &f->vk, &f->fc, size), 0);
	if (size < f->ref_size)
		memset(f->ref + size, 0, f->ref_size - size);
	f->ref_size = size;
}

/* A partial read returns exactly the model's bytes in range (0 at or past the end). */
static inline void do_read(struct ffix *f, uint64_t off, uint64_t len)
{
	uint64_t want = off >= f->ref_size ? 0 : min_u64(len, f->ref_size - off);

	assert_int_equal(fileio_read(f->fd, &f->vk, &f->fc, (char *)f->got, len, off),
			 (ssize_t)want);
	if (want > 0)
		assert_memory_equal(f->got, f->ref + off, want);
}

/* Reads the stored chunk idx (full chunk) into buf / writes it back. */
static inline void chunk_io(struct ffix *f, uint64_t idx, uint8_t *buf, int write)
{
	size_t n = f->vk.geom.size + f->vk.geom.overhead;
	off_t off = (off_t)geom_chunk_off(&f->vk.geom, idx);

	if (write)
		assert_int_equal(pwrite(f->fd, buf, n, off), (ssize_t)n);
	else
		assert_int_equal(pread(f->fd, buf, n, off), (ssize_t)n);
}

#define X(fn) cmocka_unit_test_setup_teardown(fn, setup_x512, teardown)
#define G(fn) cmocka_unit_test_setup_teardown(fn, setup_g4096, teardown)
#define P(fn) cmocka_unit_test_setup_teardown(fn, setup_x512_pool, teardown)

#endif
