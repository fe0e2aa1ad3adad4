#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "../crypto/aead.h"
#include "../crypto/secmem.h"
#include "../format/objcrypt.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))

_Static_assert(DEK_LEN == SECMEM_KEY_LEN, "a DEK fits a secmem key slot");

static int pread_full(int fd, void *buf, size_t n, uint64_t off)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO; /* shorter than its size says: truncated under us */
		got += (size_t)r;
	}
	return 0;
}

static int pwrite_full(int fd, const void *buf, size_t n, uint64_t off)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = pwrite(fd, (const char *)buf + done, n - done, (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		done += (size_t)r;
	}
	return 0;
}

int fileio_torn_state(const struct chunk_geom *g, uint64_t backing, uint64_t *plain)
{
	uint64_t stored = g->size + g->overhead, rem;

	*plain = 0;
	if (backing == 0)
		return FILEIO_BLANK;
	if (geom_plain_size(g, backing, plain) == 0)
		return FILEIO_WHOLE;
	if (backing < HEADER_LEN + stored)
		return -EIO; /* a header alone, or cut inside it or its first chunk: not a crash's
			      */
	rem = (backing - HEADER_LEN) % stored;
	*plain = (backing - HEADER_LEN) / stored * g->size;
	return rem <= g->overhead ? FILEIO_TORN : -EIO;
}

int fileio_size(int fd, const struct chunk_geom *g, uint64_t *plain)
{
	struct stat st;
	int rc;

	if (fstat(fd, &st) != 0)
		return -errno;
	rc = fileio_torn_state(g, (uint64_t)st.st_size, plain);
	return rc < 0 ? rc : 0;
}

int fileio_create(int fd, const struct volume_keys *vk, struct file_crypt *fc)
{
	uint8_t buf[HEADER_LEN + AEAD_MAX_OVERHEAD];
	int rc;

	fc->dek = secmem_key_alloc();
	if (!fc->dek)
		return -ENOMEM;
	randombytes_buf(fc->dek, DEK_LEN);
	header_init(&fc->hdr, vk->vol);
	if (header_seal_dek(&fc->hdr, vk->vol, vk->kr, fc->dek) != HDR_OK)
		return -EIO;
	header_encode(&fc->hdr, buf);
	rc = chunk_seal(&vk->geom, fc->dek, fc->hdr.file_id, 0, 1, NULL, 0, buf + HEADER_LEN);
	if (rc == 0 && ftruncate(fd, 0) != 0)
		rc = -errno;
	if (rc == 0)
		rc = pwrite_full(fd, buf, HEADER_LEN + vk->geom.overhead, 0);
	return rc;
}

void fileio_drop(struct file_crypt *fc)
{
	secmem_key_free(fc->dek);
	fc->dek = NULL;
}

/* Plaintext bytes chunk idx holds in a file of plain bytes (0 past the end). */
static uint64_t chunk_plain_len(const struct chunk_geom *g, uint64_t plain, uint64_t idx)
{
	uint64_t start = idx * g->size;

	return plain <= start ? 0 : MIN(g->size, plain - start);
}

/*
 * Opens stored chunk idx of a file whose final chunk is last. A non-final all-zero chunk
 * is a hole. A non-final chunk may also carry the final flag: that is what a crash between
 * writing new chunks and re-sealing the old final one leaves, and it grants nothing a
 * chunk rollback would not. The caller records a failure in fc->bad_chunk: helper threads
 * may run this for one request at the same time.
 */
static int chunk_decode(const struct volume_keys *vk, const struct file_crypt *fc, uint64_t idx,
			uint64_t last, const uint8_t *in, size_t in_len, uint8_t *pt)
{
	const struct chunk_geom *g = &vk->geom;
	int rc;

	if (idx != last && chunk_is_hole(in, in_len)) {
		memset(pt, 0, in_len - g->overhead);
		return 0;
	}
	rc = chunk_open(g, fc->dek, fc->hdr.file_id, idx, idx == last, in, in_len, pt);
	if (rc != 0 && idx != last)
		rc = chunk_open(g, fc->dek, fc->hdr.file_id, idx, 1, in, in_len, pt);
	return rc != 0 ? -EBADMSG : 0;
}

/* Reads and opens chunk idx of a file of cur plain bytes into pt (zero-padded to a chunk). */
static int chunk_read_plain(int fd, const struct volume_keys *vk, const struct file_crypt *fc,
			    uint64_t cur, uint64_t idx, uint8_t *pt, uint8_t *scratch)
{
	const struct chunk_geom *g = &vk->geom;
	uint64_t len = chunk_plain_len(g, cur, idx);
	uint64_t last = geom_nchunks(g, cur) - 1;
	int rc;

	memset(pt, 0, g->size);
	if (idx > last)
		return 0;
	rc = pread_full(fd, scratch, len + g->overhead, geom_chunk_off(g, idx));
	if (rc == 0)
		rc = chunk_decode(vk, fc, idx, last, scratch, len + g->overhead, pt);
	return rc;
}

/*
 * An empty file is a header and one sealed, empty, final chunk. The kernel never reads a
 * file it believes empty, so that chunk is checked here: a file cut down to one chunk's
 * overhead must not pass for an empty file.
 */
static int empty_file_check(int fd, const struct volume_keys *vk, struct file_crypt *fc)
{
	uint8_t stored[AEAD_MAX_OVERHEAD], none[1];
	int rc = pread_full(fd, stored, vk->geom.overhead, HEADER_LEN);

	if (rc == 0 && (rc = chunk_decode(vk, fc, 0, 0, stored, vk->geom.overhead, none)) != 0)
		fc->bad_chunk = 0;
	return rc;
}

/*
 * After a torn tail is cut, the last whole chunk is the file's end. If the cut write had sealed
 * it as a middle chunk, it opens only as non-final: it is sealed again as final, so that
 * the file reads to its end and grows again (a chunk that opens neither way stays EIO).
 */
static int torn_last_final(int fd, const struct volume_keys *vk, struct file_crypt *fc,
			   uint64_t plain)
{
	const struct chunk_geom *g = &vk->geom;
	uint64_t idx = geom_nchunks(g, plain) - 1;
	size_t len = g->size + g->overhead;
	uint8_t *in = malloc(2 * len), *pt = in ? in + len : NULL;
	int rc = in ? pread_full(fd, in, len, geom_chunk_off(g, idx)) : -ENOMEM;

	if (rc == 0 && chunk_open(g, fc->dek, fc->hdr.file_id, idx, 1, in, len, pt) != 0 &&
	    chunk_open(g, fc->dek, fc->hdr.file_id, idx, 0, in, len, pt) == 0) {
		rc = chunk_seal(g, fc->dek, fc->hdr.file_id, idx, 1, pt, g->size, in);
		if (rc == 0)
			rc = pwrite_full(fd, in, len, geom_chunk_off(g, idx));
	}
	if (pt)
		sodium_memzero(pt, g->size);
	free(in);
	return rc;
}

/* Through a read-write fd: the header of a 0-byte file, the trim of a torn tail; times kept. */
static int torn_mend(int fd, const struct volume_keys *vk, struct file_crypt *fc, int state,
		     const struct stat *st)
{
	const struct timespec times[2] = {st->st_atim, st->st_mtim};
	uint64_t plain;
	int rc;

	if (state == FILEIO_BLANK)
		rc = fileio_create(fd, vk, fc);
	else
		rc = fileio_torn_state(&vk->geom, (uint64_t)st->st_size, &plain) < 0 ? -EIO
		     : ftruncate(fd, (off_t)geom_backing_size(&vk->geom, plain)) != 0
			 ? -errno
			 : torn_last_final(fd, vk, fc, plain);
	if (rc == 0 && futimens(fd, times) != 0)
		rc = -errno;
	return rc;
}

/* Loads a 0-byte file: a header now through a read-write fd, else blank. */
static int blank_load(int fd, const struct volume_keys *vk, struct file_crypt *fc,
		      const struct stat *st)
{
	int rc;

	if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDWR) {
		fc->blank = 1;
		return 0;
	}
	rc = torn_mend(fd, vk, fc, FILEIO_BLANK, st);
	if (rc != 0)
		fileio_drop(fc);
	return rc;
}

/* Why fc cannot be used for I/O, or 0: a shredded file says so rather than a generic EIO. */
static int fileio_usable(const struct file_crypt *fc)
{
	if (fc->shredded)
		return -EKEYREVOKED;
	return fc->dek ? 0 : -EIO;
}

int fileio_load(int fd, const struct volume_keys *vk, struct file_crypt *fc)
{
	uint8_t buf[HEADER_LEN];
	uint64_t size;
	struct stat st;
	int rc, state;

	fc->shredded = 0;
	fc->blank = 0;
	if (fstat(fd, &st) != 0)
		return -errno;
	state = fileio_torn_state(&vk->geom, (uint64_t)st.st_size, &size);
	if (state == FILEIO_BLANK)
		return blank_load(fd, vk, fc, &st);
	rc = pread_full(fd, buf, HEADER_LEN, 0);
	if (rc == -EIO) {
		fc->hdr_err = HDR_ERR_CORRUPT; /* shorter than a header */
		return -EBADMSG;
	}
	if (rc != 0)
		return rc;
	fc->hdr_err = header_decode(buf, vk->vol, &fc->hdr);
	if (fc->hdr_err == HDR_ERR_SHREDDED)
		fc->shredded = 1;
	if (fc->hdr_err != HDR_OK)
		return fc->shredded ? -EKEYREVOKED : -EBADMSG;
	fc->dek = secmem_key_alloc();
	if (!fc->dek)
		return -ENOMEM;
	fc->hdr_err = header_open_dek(&fc->hdr, vk->vol, vk->kr, fc->dek);
	if (fc->hdr_err == HDR_OK && fileio_size(fd, &vk->geom, &size) != 0)
		fc->hdr_err = HDR_ERR_SIZE;
	if (fc->hdr_err != HDR_OK) {
		fileio_drop(fc);
		return -EBADMSG;
	}
	rc = size == 0 ? empty_file_check(fd, vk, fc) : 0;
	if (rc == 0 && state == FILEIO_TORN && (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDWR)
		rc = torn_mend(fd, vk, fc, FILEIO_TORN, &st);
	if (rc != 0) {
		fc->hdr_err = HDR_ERR_SIZE;
		fileio_drop(fc);
	}
	return rc;
}

/* Chunks a helper takes at a time: 64 KiB of 4 KiB chunks, enough to pay for the hand-off. */
#define PAR_GRAIN 16

/* One read request: stored chunks [first, rlast] of a file of cur bytes, opened into buf. */
struct read_job {
	const struct volume_keys *vk;
	struct file_crypt *fc;
	uint64_t cur, off, first, rlast, last;
	size_t n;
	const uint8_t *stored; /* the stored bytes of the chunks, from chunk first on */
	char *buf;
	uint8_t *edge[2]; /* plaintext of a partly read first and last chunk */
	atomic_uint_fast64_t bad;
};

/* Whether chunk i is read whole (it can then be opened straight into buf); from: where the
 * read starts in it. */
static int read_whole(const struct read_job *j, uint64_t i, uint64_t *from)
{
	const struct chunk_geom *g = &j->vk->geom;
	uint64_t cstart = i * g->size;

	*from = j->off > cstart ? j->off - cstart : 0;
	return *from == 0 && cstart + chunk_plain_len(g, j->cur, i) <= j->off + j->n;
}

/* Opens chunk i of a read, into buf or, if it is read in part, its edge buffer. */
static int read_chunk(struct read_job *j, uint64_t i)
{
	const struct chunk_geom *g = &j->vk->geom;
	uint64_t from, clen = chunk_plain_len(g, j->cur, i);
	uint8_t *pt = read_whole(j, i, &from) ? (uint8_t *)j->buf + (i * g->size - j->off)
					      : j->edge[i == j->first ? 0 : 1];
	const uint8_t *in = j->stored + (geom_chunk_off(g, i) - geom_chunk_off(g, j->first));
	int rc = chunk_decode(j->vk, j->fc, i, j->last, in, clen + g->overhead, pt);

	if (rc != 0)
		atomic_store(&j->bad, i);
	return rc;
}

static int read_batch(void *arg, size_t b)
{
	struct read_job *j = arg;
	uint64_t lo = j->first + b * PAR_GRAIN, hi = MIN(j->rlast + 1, lo + PAR_GRAIN);
	int rc = 0;

	for (uint64_t i = lo; i < hi && rc == 0; i++)
		rc = read_chunk(j, i);
	return rc;
}

/* Copies the read part of a partly read first or last chunk from its edge buffer. */
static void read_edges(struct read_job *j)
{
	const struct chunk_geom *g = &j->vk->geom;
	uint64_t from, lstart = j->rlast * g->size;

	if (!read_whole(j, j->first, &from))
		memcpy(j->buf, j->edge[0] + from,
		       MIN(chunk_plain_len(g, j->cur, j->first) - from, j->n));
	if (j->rlast > j->first && !read_whole(j, j->rlast, &from))
		memcpy(j->buf + (lstart - j->off), j->edge[1], j->off + j->n - lstart);
}

/* Reads the stored chunks of a request in one pread and opens them, in parallel if large. */
static ssize_t read_chunks(int fd, struct read_job *j)
{
	const struct chunk_geom *g = &j->vk->geom;
	uint64_t base = geom_chunk_off(g, j->first);
	size_t stored_len =
	    geom_chunk_off(g, j->rlast) + chunk_plain_len(g, j->cur, j->rlast) + g->overhead - base;
	uint8_t *mem = malloc(stored_len + 2 * g->size);
	int rc;

	if (!mem)
		return -ENOMEM;
	j->stored = mem;
	j->edge[0] = mem + stored_len;
	j->edge[1] = j->edge[0] + g->size;
	atomic_init(&j->bad, 0);
	rc = pread_full(fd, mem, stored_len, base);
	if (rc == 0)
		rc = par_run(j->vk->pool, (j->rlast - j->first) / PAR_GRAIN + 1, read_batch, j);
	if (rc == -EBADMSG)
		j->fc->bad_chunk = atomic_load(&j->bad);
	if (rc == 0)
		read_edges(j);
	sodium_memzero(j->edge[0], 2 * g->size);
	free(mem);
	return rc != 0 ? rc : (ssize_t)j->n;
}

ssize_t fileio_read(int fd, const struct volume_keys *vk, struct file_crypt *fc, char *buf,
		    size_t n, uint64_t off)
{
	const struct chunk_geom *g = &vk->geom;
	struct read_job j = {.vk = vk, .fc = fc, .off = off, .buf = buf};
	int rc;

	if (fc->blank) /* a 0-byte file, seen through a read-only fd: empty */
		return 0;
	rc = fileio_usable(fc);
	if (rc == 0)
		rc = fileio_size(fd, g, &j.cur);
	if (rc != 0)
		return rc;
	if (j.cur == 0)
		return empty_file_check(fd, vk, fc);
	if (off >= j.cur || n == 0)
		return 0;
	j.n = MIN(n, j.cur - off);
	j.first = off / g->size;
	j.rlast = (off + j.n - 1) / g->size;
	j.last = geom_nchunks(g, j.cur) - 1;
	return read_chunks(fd, &j);
}

/*
 * Seals chunk idx of a file growing or changing from cur to newsize bytes, with data
 * (covering plain offsets [off, off+n)) laid over its old contents. A chunk the data
 * covers whole is sealed straight from it; others are read, patched in pt, then sealed.
 */
static int chunk_rewrite(int fd, const struct volume_keys *vk, const struct file_crypt *fc,
			 uint64_t cur, uint64_t newsize, uint64_t idx, const char *data, size_t n,
			 uint64_t off, uint8_t *out, uint8_t *pt, uint8_t *scratch)
{
	const struct chunk_geom *g = &vk->geom;
	uint64_t cstart = idx * g->size, newlen = chunk_plain_len(g, newsize, idx);
	uint64_t lo = MIN(newlen, off > cstart ? off - cstart : 0);
	uint64_t hi = MIN(newlen, off + n > cstart ? off + n - cstart : 0);
	int final = idx == geom_nchunks(g, newsize) - 1, rc;

	if (n > 0 && lo == 0 && hi == newlen)
		return chunk_seal(g, fc->dek, fc->hdr.file_id, idx, final,
				  (const uint8_t *)data + (cstart - off), newlen, out);
	rc = chunk_read_plain(fd, vk, fc, cur, idx, pt, scratch);
	if (rc != 0)
		return rc;
	if (hi > lo)
		memcpy(pt + lo, data + (cstart + lo - off), hi - lo);
	return chunk_seal(g, fc->dek, fc->hdr.file_id, idx, final, pt, newlen, out);
}

/*
 * A growing write past the file size limit fails before any byte changed: the pwrite would
 * stop part-way, after overwriting old chunks in place. The write itself stays one pwrite, so
 * a crash cannot leave the old final chunk rewritten apart from the growth that follows it.
 * (Reserving the space with fallocate first made concurrent readers see EIO in the soak.)
 */
static int growth_allowed(uint64_t new_end)
{
	struct rlimit lim;

	if (getrlimit(RLIMIT_FSIZE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY &&
	    new_end > (uint64_t)lim.rlim_cur)
		return -EFBIG;
	return 0;
}

/* One write request: chunks [first, wlast] of a file going from cur to newsize bytes. */
struct write_job {
	int fd;
	const struct volume_keys *vk;
	const struct file_crypt *fc;
	uint64_t cur, newsize, first, wlast, off;
	uint64_t grow_to; /* backing size after a growing write, 0 if not growing */
	const char *data;
	size_t n;
	uint8_t *out;	  /* the sealed chunks, from chunk first on */
	uint8_t *edge[2]; /* room to patch a partly written first and last chunk */
	atomic_uint_fast64_t bad;
};

static int write_batch(void *arg, size_t b)
{
	struct write_job *j = arg;
	const struct chunk_geom *g = &j->vk->geom;
	uint64_t lo = j->first + b * PAR_GRAIN, hi = MIN(j->wlast + 1, lo + PAR_GRAIN);
	int rc = 0;

	for (uint64_t i = lo; i < hi && rc == 0; i++) {
		uint8_t *pt = j->edge[i == j->first ? 0 : 1];

		rc = chunk_rewrite(j->fd, j->vk, j->fc, j->cur, j->newsize, i, j->data, j->n,
				   j->off, j->out + (i - j->first) * (g->size + g->overhead), pt,
				   pt + g->size);
		if (rc == -EBADMSG)
			atomic_store(&j->bad, i);
	}
	return rc;
}

/* Seals the chunks of a write (in parallel if large) and writes them in one pwrite. */
static int write_chunks(struct write_job *j, struct file_crypt *fc)
{
	const struct chunk_geom *g = &j->vk->geom;
	uint64_t base = geom_chunk_off(g, j->first), edge = 2 * g->size + g->overhead;
	size_t out_len = geom_chunk_off(g, j->wlast) + chunk_plain_len(g, j->newsize, j->wlast) +
			 g->overhead - base;
	int rc;

	j->out = malloc(out_len + 2 * edge);
	if (!j->out)
		return -ENOMEM;
	j->edge[0] = j->out + out_len;
	j->edge[1] = j->edge[0] + edge;
	atomic_init(&j->bad, 0);
	rc = par_run(j->vk->pool, (j->wlast - j->first) / PAR_GRAIN + 1, write_batch, j);
	if (rc == -EBADMSG)
		fc->bad_chunk = atomic_load(&j->bad);
	if (rc == 0 && j->grow_to)
		rc = growth_allowed(j->grow_to);
	if (rc == 0) /* one pwrite: the old final chunk and the growth land together */
		rc = pwrite_full(j->fd, j->out, out_len, base);
	sodium_memzero(j->edge[0], 2 * edge);
	free(j->out);
	return rc;
}

/* Re-seals the old final chunk idx of a file that grew past it, as non-final and full. */
static int old_final_reseal(int fd, const struct volume_keys *vk, struct file_crypt *fc,
			    uint64_t cur, uint64_t newsize, uint64_t idx)
{
	const struct chunk_geom *g = &vk->geom;
	uint64_t stored = g->size + g->overhead;
	uint8_t *buf = malloc(stored + g->size + stored);
	int rc;

	if (!buf)
		return -ENOMEM;
	rc = chunk_rewrite(fd, vk, fc, cur, newsize, idx, NULL, 0, 0, buf, buf + stored,
			   buf + stored + g->size);
	if (rc == -EBADMSG)
		fc->bad_chunk = idx;
	if (rc == 0)
		rc = pwrite_full(fd, buf, stored, geom_chunk_off(g, idx));
	sodium_memzero(buf + stored, g->size);
	free(buf);
	return rc;
}

/*
 * Writes n bytes at off (n may be 0: grow to newsize). Chunks of the written range go out in
 * one pwrite; then, if the file grew past its old final chunk, that chunk is re-sealed as
 * non-final and full. The new final chunk is on disk before the old one loses its flag.
 * Growing writes go out in one pwrite; one that fails (a full disk) cuts the file back to its
 * old size.
 */
static int file_update(int fd, const struct volume_keys *vk, struct file_crypt *fc, uint64_t cur,
		       uint64_t newsize, const char *data, size_t n, uint64_t off)
{
	const struct chunk_geom *g = &vk->geom;
	uint64_t last = geom_nchunks(g, cur) - 1, newlast = geom_nchunks(g, newsize) - 1;
	uint64_t old_end = geom_backing_size(g, cur);
	struct write_job j = {.fd = fd,
			      .vk = vk,
			      .fc = fc,
			      .cur = cur,
			      .newsize = newsize,
			      .first = n ? off / g->size : newlast,
			      .wlast = n ? (off + n - 1) / g->size : newlast,
			      .off = off,
			      .grow_to = newsize > cur ? geom_backing_size(g, newsize) : 0,
			      .data = data,
			      .n = n};
	int rc = write_chunks(&j, fc);

	if (rc == 0 && newsize > cur && last < j.first)
		rc = old_final_reseal(fd, vk, fc, cur, newsize, last);
	if (rc != 0 && newsize > cur && ftruncate(fd, (off_t)old_end) != 0)
		rc = -EIO; /* left longer than its chunks: not a clean ENOSPC any more */
	return rc;
}

/*
 * Reserves the space a write of plain [off, off+n) will fill in a sparse backing file: a
 * full disk then fails the write before it half-writes a chunk that was a hole (which would
 * read as EIO instead of zeros). A file without holes needs nothing: it is overwritten in
 * place, and growth is undone on failure (file_update).
 */
static int reserve_holes(int fd, const struct stat *st, const struct chunk_geom *g, uint64_t off,
			 size_t n)
{
	uint64_t from = geom_chunk_off(g, off / g->size);
	uint64_t to = geom_chunk_off(g, (off + n - 1) / g->size) + g->size + g->overhead;

	if ((uint64_t)st->st_blocks * 512 >= (uint64_t)st->st_size)
		return 0;
	if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)from, (off_t)(to - from)) == 0 ||
	    errno == EOPNOTSUPP)
		return 0;
	return -errno;
}

/* fileio_write, or with inside set, nothing (0) for a write that would not end inside the file. */
static ssize_t write_sized(int fd, const struct volume_keys *vk, struct file_crypt *fc,
			   const char *buf, size_t n, uint64_t off, int inside)
{
	struct stat st;
	uint64_t cur;
	int rc = fileio_usable(fc), state = 0;

	if (rc == 0 && fstat(fd, &st) != 0)
		rc = -errno;
	if (rc == 0 && (state = fileio_torn_state(&vk->geom, (uint64_t)st.st_size, &cur)) < 0)
		rc = state;
	if (rc == 0 &&
	    state == FILEIO_TORN) { /* the torn tail goes first, inode held exclusively */
		if (inside)
			return 0;
		rc = torn_mend(fd, vk, fc, state, &st);
		if (rc == 0 && fstat(fd, &st) != 0)
			rc = -errno;
	}
	if (rc != 0 || n == 0 || (inside && off + n > cur))
		return rc;
	rc = reserve_holes(fd, &st, &vk->geom, off, n);
	if (rc == 0)
		rc = file_update(fd, vk, fc, cur, cur > off + n ? cur : off + n, buf, n, off);
	return rc != 0 ? rc : (ssize_t)n;
}

ssize_t fileio_write(int fd, const struct volume_keys *vk, struct file_crypt *fc, const char *buf,
		     size_t n, uint64_t off)
{
	return write_sized(fd, vk, fc, buf, n, off, 0);
}

ssize_t fileio_write_inside(int fd, const struct volume_keys *vk, struct file_crypt *fc,
			    const char *buf, size_t n, uint64_t off)
{
	return write_sized(fd, vk, fc, buf, n, off, 1);
}

int fileio_reserve(int fd, const struct chunk_geom *g, uint64_t plain_end)
{
	struct stat st;
	uint64_t need = geom_backing_size(g, plain_end);
	int rc;

	if (fstat(fd, &st) != 0)
		return -errno;
	if (need <= (uint64_t)st.st_size ||
	    fallocate(fd, FALLOC_FL_KEEP_SIZE, st.st_size, (off_t)need - st.st_size) == 0 ||
	    errno == EOPNOTSUPP)
		return 0;
	rc = -errno; /* give back what the failed call took: the disk is full enough */
	fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, st.st_size,
		  (off_t)need - st.st_size);
	return rc;
}

/* Shrinks to size > 0: re-seal the chunk holding the new end as final, then cut the rest. */
static int file_shrink(int fd, const struct volume_keys *vk, struct file_crypt *fc, uint64_t cur,
		       uint64_t size)
{
	const struct chunk_geom *g = &vk->geom;
	uint64_t newlast = geom_nchunks(g, size) - 1;
	uint8_t *buf = malloc(3 * (g->size + g->overhead));
	uint8_t *pt, *scratch;
	int rc;

	if (!buf)
		return -ENOMEM;
	pt = buf + g->size + g->overhead;
	scratch = pt + g->size + g->overhead;
	rc = chunk_read_plain(fd, vk, fc, cur, newlast, pt, scratch);
	if (rc == -EBADMSG)
		fc->bad_chunk = newlast;
	if (rc == 0)
		rc = chunk_seal(g, fc->dek, fc->hdr.file_id, newlast, 1, pt,
				chunk_plain_len(g, size, newlast), buf);
	if (rc == 0)
		rc = pwrite_full(fd, buf, chunk_plain_len(g, size, newlast) + g->overhead,
				 geom_chunk_off(g, newlast));
	if (rc == 0 && ftruncate(fd, (off_t)geom_backing_size(g, size)) != 0)
		rc = -errno;
	sodium_memzero(pt, g->size);
	free(buf);
	return rc;
}

/* Truncation to zero: a new file id and DEK, and the user.* xattrs re-sealed under them. */
static int fileio_rekey(int fd, const struct volume_keys *vk, struct file_crypt *fc)
{
	struct file_crypt old = *fc;
	int rc;

	fc->dek = NULL;
	rc = fileio_create(fd, vk, fc);
	if (rc != 0)
		fileio_drop(fc); /* the disk may hold either header now: reload on next open */
	else
		rc = xattr_rekey_fd(fd, vk->nk, old.dek, old.hdr.file_id, fc->dek, fc->hdr.file_id);
	fileio_drop(&old);
	return rc;
}

int fileio_truncate(int fd, const struct volume_keys *vk, struct file_crypt *fc, uint64_t size)
{
	uint64_t cur;
	int rc = fileio_usable(fc);

	if (rc == 0)
		rc = fileio_size(fd, &vk->geom, &cur);
	if (rc != 0)
		return rc;
	/* An empty file stays as it is: re-keying it would only open a crash window (0 bytes). */
	if (size == cur)
		return 0;
	if (size == 0)
		return fileio_rekey(fd, vk, fc);
	if (size < cur)
		return file_shrink(fd, vk, fc, cur, size);
	return file_update(fd, vk, fc, cur, size, NULL, 0, 0);
}

/*
 * Writes a re-wrapped slot and puts atime and mtime back as they were: a key operation is
 * not a change of the plaintext, so rsync, make and backups must not see one. The caller's
 * inode lock keeps user writes and time changes out between the fstat and the futimens.
 */
static int slot_write_keeping_times(int fd, const uint8_t *slot, uint64_t off)
{
	struct stat st;
	int rc = fstat(fd, &st) == 0 ? 0 : -errno;

	if (rc == 0)
		rc = pwrite_full(fd, slot, WRAP_SLOT_LEN, off);
	if (rc == 0 && futimens(fd, (struct timespec[2]){st.st_atim, st.st_mtim}) != 0)
		rc = -errno;
	return rc;
}

int fileio_rewrap(int fd, const struct volume_keys *vk, int always, int *hdr_err)
{
	uint8_t buf[HEADER_LEN];
	struct file_header h;
	uint8_t *dek = secmem_alloc(DEK_LEN);
	int rc = dek ? pread_full(fd, buf, HEADER_LEN, 0) : -ENOMEM;

	*hdr_err = HDR_OK;
	if (rc == 0 && (*hdr_err = header_decode(buf, vk->vol, &h)) == HDR_OK)
		*hdr_err = header_open_dek(&h, vk->vol, vk->kr, dek);
	if (rc == 0 && *hdr_err == HDR_ERR_SHREDDED) { /* no key left to re-wrap: done */
		*hdr_err = HDR_OK;
		secmem_free(dek);
		return 0;
	}
	if (rc == 0 && *hdr_err != HDR_OK)
		rc = -EBADMSG;
	if (rc == 0 && !always && h.cur.kek_version == keyring_active_version(vk->kr)) {
		secmem_free(dek);
		return 0;
	}
	if (rc == 0 && header_seal_dek(&h, vk->vol, vk->kr, dek) != HDR_OK)
		rc = -EIO;
	secmem_free(dek);
	if (rc == 0) {
		header_encode(&h, buf);
		rc = slot_write_keeping_times(fd, buf + HEADER_SLOT_OFF(h.current),
					      HEADER_SLOT_OFF(h.current));
	}
	return rc == 0 ? 1 : rc;
}

int fileio_shred(int fd, uint8_t file_id[FILE_ID_LEN], uint32_t *kek)
{
	uint8_t buf[HEADER_LEN], out[HEADER_SHRED_LEN];
	int rc = pread_full(fd, buf, HEADER_LEN, 0);

	if (rc == -EIO || (rc == 0 && !header_is_kekfs(buf)))
		return -EBADMSG;
	if (rc != 0)
		return rc;
	memcpy(file_id, buf + HEADER_FILE_ID_OFF, FILE_ID_LEN);
	if (header_current_version(buf, kek) != HDR_OK)
		*kek = 0;
	header_shred_bytes(buf, out);
	rc = pwrite_full(fd, out, sizeof(out), HEADER_FLAGS_OFF);
	if (rc == 0 && fdatasync(fd) != 0)
		rc = -errno;
	sodium_memzero(buf, sizeof(buf));
	return rc;
}

int fileio_kek_version(int fd, uint32_t *version)
{
	uint8_t buf[HEADER_LEN];
	int rc = pread_full(fd, buf, HEADER_LEN, 0);

	if (rc != 0)
		return rc;
	return header_current_version(buf, version) == HDR_OK ? 0 : -EBADMSG;
}
