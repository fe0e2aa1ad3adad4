#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "../crypto/aead.h"
#include "../crypto/secmem.h"
#include "objcrypt.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))

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

int fileio_size(int fd, const struct chunk_geom *g, uint64_t *plain)
{
	struct stat st;

	if (fstat(fd, &st) != 0)
		return -errno;
	return geom_plain_size(g, (uint64_t)st.st_size, plain);
}

int fileio_create(int fd, const struct volume_keys *vk, struct file_crypt *fc)
{
	uint8_t buf[HEADER_LEN + AEAD_MAX_OVERHEAD];
	int rc;

	fc->dek = secmem_alloc(DEK_LEN);
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
	secmem_free(fc->dek);
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
 * chunk rollback would not.
 */
static int chunk_decode(const struct volume_keys *vk, struct file_crypt *fc, uint64_t idx,
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
	if (rc != 0) {
		fc->bad_chunk = idx;
		return -EBADMSG;
	}
	return 0;
}

/* Reads and opens chunk idx of a file of cur plain bytes into pt (zero-padded to a chunk). */
static int chunk_read_plain(int fd, const struct volume_keys *vk, struct file_crypt *fc,
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

	if (rc == 0)
		rc = chunk_decode(vk, fc, 0, 0, stored, vk->geom.overhead, none);
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
	int rc = pread_full(fd, buf, HEADER_LEN, 0);

	fc->shredded = 0;
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
	fc->dek = secmem_alloc(DEK_LEN);
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
	if (rc != 0) {
		fc->hdr_err = HDR_ERR_SIZE;
		fileio_drop(fc);
	}
	return rc;
}

ssize_t fileio_read(int fd, const struct volume_keys *vk, struct file_crypt *fc, char *buf,
		    size_t n, uint64_t off)
{
	const struct chunk_geom *g = &vk->geom;
	uint64_t cur, first, rlast, last, base;
	uint8_t *stored, *tmp;
	size_t stored_len, done = 0;
	int rc = fileio_usable(fc);

	if (rc == 0)
		rc = fileio_size(fd, g, &cur);
	if (rc != 0)
		return rc;
	if (cur == 0)
		return empty_file_check(fd, vk, fc);
	if (off >= cur || n == 0)
		return 0;
	n = MIN(n, cur - off);
	first = off / g->size;
	rlast = (off + n - 1) / g->size;
	last = geom_nchunks(g, cur) - 1;
	base = geom_chunk_off(g, first);
	stored_len = geom_chunk_off(g, rlast) + chunk_plain_len(g, cur, rlast) + g->overhead - base;
	stored = malloc(stored_len + g->size);
	if (!stored)
		return -ENOMEM;
	tmp = stored + stored_len;
	rc = pread_full(fd, stored, stored_len, base);
	for (uint64_t i = first; rc == 0 && i <= rlast; i++) {
		uint64_t clen = chunk_plain_len(g, cur, i);
		uint64_t cstart = i * g->size, from = off > cstart ? off - cstart : 0;
		size_t take = MIN(clen - from, n - done);
		uint8_t *in = stored + (geom_chunk_off(g, i) - base);
		int whole = from == 0 && take == clen;

		rc = chunk_decode(vk, fc, i, last, in, clen + g->overhead,
				  whole ? (uint8_t *)buf + done : tmp);
		if (rc == 0 && !whole)
			memcpy(buf + done, tmp + from, take);
		done += take;
	}
	sodium_memzero(tmp, g->size);
	free(stored);
	return rc != 0 ? rc : (ssize_t)done;
}

/*
 * Seals chunk idx of a file growing or changing from cur to newsize bytes, with data
 * (covering plain offsets [off, off+n)) laid over its old contents.
 */
static int chunk_rewrite(int fd, const struct volume_keys *vk, struct file_crypt *fc, uint64_t cur,
			 uint64_t newsize, uint64_t idx, const char *data, size_t n, uint64_t off,
			 uint8_t *out, uint8_t *pt, uint8_t *scratch)
{
	const struct chunk_geom *g = &vk->geom;
	uint64_t cstart = idx * g->size, newlen = chunk_plain_len(g, newsize, idx);
	uint64_t lo = MIN(newlen, off > cstart ? off - cstart : 0);
	uint64_t hi = MIN(newlen, off + n > cstart ? off + n - cstart : 0);
	uint64_t newlast = geom_nchunks(g, newsize) - 1;
	int rc = 0;

	if (n == 0 || lo > 0 || hi < newlen)
		rc = chunk_read_plain(fd, vk, fc, cur, idx, pt, scratch);
	if (rc != 0)
		return rc;
	if (hi > lo)
		memcpy(pt + lo, data + (cstart + lo - off), hi - lo);
	return chunk_seal(g, fc->dek, fc->hdr.file_id, idx, idx == newlast, pt, newlen, out);
}

/*
 * Writes buf at off, the part past old_end (new space, which may run out) before the part
 * below it (overwritten in place): a full disk then fails the write before any old byte
 * has changed.
 */
static int pwrite_grow(int fd, const uint8_t *buf, size_t n, uint64_t off, uint64_t old_end)
{
	size_t head = off >= old_end ? 0 : (size_t)MIN(n, old_end - off);
	int rc = pwrite_full(fd, buf + head, n - head, off + head);

	if (rc == 0 && head > 0)
		rc = pwrite_full(fd, buf, head, off);
	return rc;
}

/*
 * Writes n bytes at off (n may be 0: grow to newsize). Chunks of the written range go out in
 * one pwrite; then, if the file grew past its old final chunk, that chunk is re-sealed as
 * non-final and full. The new final chunk is on disk before the old one loses its flag.
 * Growing sets the new size first: a crash part-way then leaves a size of whole chunks (new
 * ones read as holes or EIO, the file still opens), never a torn size that fails the whole
 * file. A growing write that fails (ENOSPC) cuts the file back to its old size.
 */
static int file_update(int fd, const struct volume_keys *vk, struct file_crypt *fc, uint64_t cur,
		       uint64_t newsize, const char *data, size_t n, uint64_t off)
{
	const struct chunk_geom *g = &vk->geom;
	uint64_t stored = g->size + g->overhead;
	uint64_t last = geom_nchunks(g, cur) - 1, newlast = geom_nchunks(g, newsize) - 1;
	uint64_t first = n ? off / g->size : newlast, wlast = n ? (off + n - 1) / g->size : newlast;
	uint64_t old_end = geom_backing_size(g, cur);
	size_t out_len = 0;
	uint8_t *out, *pt, *scratch;
	int rc = 0;

	out = malloc((wlast - first + 1) * stored + g->size + stored);
	if (!out)
		return -ENOMEM;
	pt = out + (wlast - first + 1) * stored;
	scratch = pt + g->size;
	for (uint64_t i = first; rc == 0 && i <= wlast; i++) {
		rc = chunk_rewrite(fd, vk, fc, cur, newsize, i, data, n, off, out + out_len, pt,
				   scratch);
		out_len += chunk_plain_len(g, newsize, i) + g->overhead;
	}
	if (rc == 0 && newsize > cur && ftruncate(fd, (off_t)geom_backing_size(g, newsize)) != 0)
		rc = -errno;
	if (rc == 0)
		rc = pwrite_grow(fd, out, out_len, geom_chunk_off(g, first), old_end);
	if (rc == 0 && newsize > cur && last < first) {
		rc = chunk_rewrite(fd, vk, fc, cur, newsize, last, NULL, 0, 0, out, pt, scratch);
		if (rc == 0)
			rc = pwrite_grow(fd, out, stored, geom_chunk_off(g, last), old_end);
	}
	if (rc != 0 && newsize > cur && ftruncate(fd, (off_t)old_end) != 0)
		rc = -EIO; /* left longer than its chunks: not a clean ENOSPC any more */
	sodium_memzero(pt, g->size);
	free(out);
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

ssize_t fileio_write(int fd, const struct volume_keys *vk, struct file_crypt *fc, const char *buf,
		     size_t n, uint64_t off)
{
	struct stat st;
	uint64_t cur;
	int rc = fileio_usable(fc);

	if (rc == 0 && fstat(fd, &st) != 0)
		rc = -errno;
	if (rc == 0)
		rc = geom_plain_size(&vk->geom, (uint64_t)st.st_size, &cur);
	if (rc != 0 || n == 0)
		return rc;
	rc = reserve_holes(fd, &st, &vk->geom, off, n);
	if (rc == 0)
		rc = file_update(fd, vk, fc, cur, cur > off + n ? cur : off + n, buf, n, off);
	return rc != 0 ? rc : (ssize_t)n;
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
		rc = pwrite_full(fd, buf + HEADER_SLOT_OFF(h.current), WRAP_SLOT_LEN,
				 HEADER_SLOT_OFF(h.current));
	}
	return rc == 0 ? 1 : rc;
}

int fileio_shred(int fd, uint8_t file_id[FILE_ID_LEN], uint32_t *kek)
{
	uint8_t buf[HEADER_LEN], out[HEADER_SHRED_LEN];
	int rc = pread_full(fd, buf, HEADER_LEN, 0);

	if (rc == -EIO || (rc == 0 && memcmp(buf, "KKFS", 4) != 0))
		return -EBADMSG;
	if (rc != 0)
		return rc;
	memcpy(file_id, buf + 8, FILE_ID_LEN);
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
