/*
 * libFuzzer: a file header (256 bytes): decode, unwrap the DEK, each slot on its own (fsck),
 * the checksum-only view, shred.
 */
#include <string.h>

#include "../../format/header.h"
#include "../../volume/shred.h"
#include "fuzz_common.h"

static void parse(struct fixture *fx, const uint8_t in[HEADER_LEN])
{
	uint8_t shred[HEADER_SHRED_LEN];
	uint8_t *dek =
	    sodium_malloc(DEK_LEN); /* before a guard page: libsodium is not instrumented */
	struct file_header h;
	uint32_t version;
	char msg[256];
	int state[2];

	if (!dek)
		abort();
	if (header_decode(in, &fx->vol, &h) == HDR_OK) {
		if (header_open_dek(&h, &fx->vol, fx->kr, dek) == HDR_OK && h.current != 0 &&
		    h.current != 1)
			abort(); /* an opened header names the slot its DEK came from */
		header_check_slots(&h, &fx->vol, fx->kr, state);
	}
	header_current_version(in, &version);
	shred_verify_header(&fx->vol, fx->kr, in, msg, sizeof(msg));
	header_shred_bytes(in, shred);
	sodium_free(dek);
}

/* The header as given, then with both slots' checksums made right (into the unwrap). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fixture *fx = fixture_get();
	uint8_t in[HEADER_LEN] = {0}, *a, *b;

	memcpy(in, data, size < HEADER_LEN ? size : HEADER_LEN);
	parse(fx, in);
	a = checksum_fixed(in + HEADER_SLOT_OFF(0), WRAP_SLOT_LEN, 88, 88);
	b = checksum_fixed(in + HEADER_SLOT_OFF(1), WRAP_SLOT_LEN, 88, 88);
	memcpy(in + HEADER_SLOT_OFF(0), a, WRAP_SLOT_LEN);
	memcpy(in + HEADER_SLOT_OFF(1), b, WRAP_SLOT_LEN);
	parse(fx, in);
	free(a);
	free(b);
	return 0;
}
