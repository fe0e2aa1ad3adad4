#include "holes.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

void hole_plan_make(const struct chunk_geom *g, uint64_t size, uint64_t off, uint64_t len,
		    struct hole_plan *p)
{
	uint64_t end = off + len < size && off + len >= off ? off + len : size;
	uint64_t last = geom_nchunks(g, size) - 1, a, b;

	*p = (struct hole_plan){0};
	if (off >= end)
		return;
	a = (off + g->size - 1) / g->size; /* first chunk wholly inside */
	b = end / g->size;		   /* one past the last one */
	if (b > last)
		b = last; /* the final chunk stays sealed: it is written with zeros */
	if (a >= b) {
		p->head_off = off;
		p->head_len = end - off;
		return;
	}
	p->head_off = off;
	p->head_len = a * g->size - off;
	p->first = a;
	p->count = b - a;
	p->tail_off = b * g->size;
	p->tail_len = end - p->tail_off;
}

static int zeros_write(int fd, const struct volume_keys *vk, struct file_crypt *fc, uint64_t off,
		       uint64_t len)
{
	char *zeros;
	ssize_t n;

	if (len == 0)
		return 0;
	zeros = calloc(1, len);
	if (!zeros)
		return -ENOMEM;
	n = fileio_write(fd, vk, fc, zeros, len, off);
	free(zeros);
	return n < 0 ? (int)n : 0;
}

int holes_zero(int fd, const struct volume_keys *vk, struct file_crypt *fc, uint64_t off,
	       uint64_t len, int keep_allocated)
{
	const struct chunk_geom *g = &vk->geom;
	struct hole_plan p;
	uint64_t size, from, bytes;
	int rc = fileio_size(fd, g, &size);

	if (rc != 0)
		return rc;
	hole_plan_make(g, size, off, len, &p);
	rc = zeros_write(fd, vk, fc, p.head_off, p.head_len);
	from = geom_chunk_off(g, p.first);
	bytes = p.count * (g->size + g->overhead);
	if (rc == 0 && p.count &&
	    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)from, (off_t)bytes) != 0)
		rc = -errno;
	if (rc == 0 && p.count && keep_allocated &&
	    fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)from, (off_t)bytes) != 0 && errno != EOPNOTSUPP)
		rc = -errno;
	if (rc == 0)
		rc = zeros_write(fd, vk, fc, p.tail_off, p.tail_len);
	return rc;
}

/* The chunk whose stored bytes hold backing offset boff (the header counts as chunk 0). */
static uint64_t chunk_at(const struct chunk_geom *g, uint64_t boff)
{
	return boff < HEADER_LEN ? 0 : (boff - HEADER_LEN) / (g->size + g->overhead);
}

/* Whether every stored byte of chunk idx is a backing hole; -errno. */
static int chunk_is_backing_hole(int fd, const struct chunk_geom *g, uint64_t idx)
{
	off_t d = lseek(fd, (off_t)geom_chunk_off(g, idx), SEEK_DATA);

	if (d < 0)
		return errno == ENXIO ? 1 : -errno;
	return (uint64_t)d >= geom_chunk_off(g, idx + 1);
}

/* The first chunk from idx on (before the final one, last) that is a hole; last if none. */
static int64_t next_hole_chunk(int fd, const struct chunk_geom *g, uint64_t idx, uint64_t last)
{
	while (idx < last) {
		off_t h = lseek(fd, (off_t)geom_chunk_off(g, idx), SEEK_HOLE);
		uint64_t j;
		int hole;

		if (h < 0)
			return -errno;
		j = chunk_at(g, (uint64_t)h);
		if (geom_chunk_off(g, j) < (uint64_t)h)
			j++; /* a hole starting inside chunk j does not make j one */
		if (j >= last)
			break;
		hole = chunk_is_backing_hole(fd, g, j);
		if (hole != 0)
			return hole < 0 ? hole : (int64_t)j;
		idx = j + 1;
	}
	return (int64_t)last;
}

int holes_seek(int fd, const struct chunk_geom *g, uint64_t size, uint64_t off, int whence,
	       uint64_t *res)
{
	uint64_t last = geom_nchunks(g, size) - 1, idx = off / g->size, at;
	int64_t j;
	off_t d;

	if (off >= size)
		return -ENXIO;
	if (whence == SEEK_HOLE) {
		j = next_hole_chunk(fd, g, idx, last);
		if (j < 0)
			return (int)j;
		at = (uint64_t)j == last ? size : (uint64_t)j * g->size;
	} else {
		d = idx < last ? lseek(fd, (off_t)geom_chunk_off(g, idx), SEEK_DATA) : 0;
		if (d < 0 && errno != ENXIO)
			return -errno;
		j = idx < last && d >= 0 ? (int64_t)chunk_at(g, (uint64_t)d) : (int64_t)last;
		at = ((uint64_t)j > last ? last : (uint64_t)j) * g->size;
	}
	*res = at > off ? at : off;
	return 0;
}
