#include "chunk.h"

#include <errno.h>
#include <string.h>

#include "../crypto/aead.h"
#include "../crypto/bytes.h"

#define CHUNK_AAD_LEN (FILE_ID_LEN + 8 + 1)

void geom_init(struct chunk_geom *g, int cipher, unsigned chunk_shift)
{
	g->cipher = cipher;
	g->size = 1ULL << chunk_shift;
	g->overhead = aead_overhead(cipher);
}

uint64_t geom_nchunks(const struct chunk_geom *g, uint64_t plain)
{
	return plain == 0 ? 1 : (plain + g->size - 1) / g->size;
}

uint64_t geom_backing_size(const struct chunk_geom *g, uint64_t plain)
{
	return HEADER_LEN + geom_nchunks(g, plain) * g->overhead + plain;
}

uint64_t geom_plain_capacity(const struct chunk_geom *g, uint64_t backing)
{
	uint64_t stored = g->size + g->overhead, body, rem;

	if (backing < HEADER_LEN + g->overhead)
		return 0;
	body = backing - HEADER_LEN;
	rem = body % stored;
	return body / stored * g->size + (rem > g->overhead ? rem - g->overhead : 0);
}

int geom_plain_size(const struct chunk_geom *g, uint64_t backing, uint64_t *plain)
{
	uint64_t stored = g->size + g->overhead, body, full, rem;

	if (backing < HEADER_LEN + g->overhead)
		return -EIO;
	body = backing - HEADER_LEN;
	full = body / stored;
	rem = body % stored;
	if (rem == 0) {
		*plain = full * g->size;
		return 0;
	}
	/* A partial last chunk holds at least one byte, unless it is the only chunk. */
	if (rem < g->overhead || (rem == g->overhead && full > 0))
		return -EIO;
	*plain = full * g->size + (rem - g->overhead);
	return 0;
}

uint64_t geom_chunk_off(const struct chunk_geom *g, uint64_t idx)
{
	return HEADER_LEN + idx * (g->size + g->overhead);
}

static void chunk_aad(uint8_t aad[CHUNK_AAD_LEN], const uint8_t file_id[FILE_ID_LEN], uint64_t idx,
		      int final)
{
	memcpy(aad, file_id, FILE_ID_LEN);
	put_le64(aad + FILE_ID_LEN, idx);
	aad[FILE_ID_LEN + 8] = final ? 1 : 0;
}

int chunk_seal(const struct chunk_geom *g, const uint8_t dek[DEK_LEN],
	       const uint8_t file_id[FILE_ID_LEN], uint64_t idx, int final, const uint8_t *pt,
	       size_t len, uint8_t *out)
{
	uint8_t aad[CHUNK_AAD_LEN];

	if (len > g->size)
		return -EINVAL;
	chunk_aad(aad, file_id, idx, final);
	return aead_seal(g->cipher, dek, aad, sizeof(aad), pt, len, out);
}

int chunk_open(const struct chunk_geom *g, const uint8_t dek[DEK_LEN],
	       const uint8_t file_id[FILE_ID_LEN], uint64_t idx, int final, const uint8_t *in,
	       size_t in_len, uint8_t *pt)
{
	uint8_t aad[CHUNK_AAD_LEN];

	if (in_len < g->overhead || in_len > g->size + g->overhead)
		return -EBADMSG;
	chunk_aad(aad, file_id, idx, final);
	return aead_open(g->cipher, dek, aad, sizeof(aad), in, in_len, pt);
}

int chunk_is_hole(const uint8_t *in, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (in[i])
			return 0;
	return 1;
}
