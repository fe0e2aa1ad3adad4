/* libFuzzer: a file header (256 bytes): decode, unwrap the DEK, the checksum-only view, shred. */
#include <string.h>

#include "../../fs/header.h"
#include "../../fs/shred.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fixture *fx = fixture_get();
	uint8_t in[HEADER_LEN] = {0}, shred[HEADER_SHRED_LEN];
	uint8_t *dek =
	    sodium_malloc(DEK_LEN); /* before a guard page: libsodium is not instrumented */
	struct file_header h;
	uint32_t version;
	char msg[256];

	memcpy(in, data, size < HEADER_LEN ? size : HEADER_LEN);
	if (header_decode(in, &fx->vol, &h) == HDR_OK)
		header_open_dek(&h, &fx->vol, fx->kr, dek);
	header_current_version(in, &version);
	shred_verify_header(&fx->vol, fx->kr, in, msg, sizeof(msg));
	header_shred_bytes(in, shred);
	sodium_free(dek);
	return 0;
}
