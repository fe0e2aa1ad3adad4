/*
 * libFuzzer: the volume config (.kekfs/volume): load, then unwrap its name key; again with
 * its checksum made right, so the fields behind it are reached.
 */
#include <unistd.h>

#include "fuzz_common.h"

static void parse(struct fixture *fx, const uint8_t *data, size_t size)
{
	struct volume v;
	char path[64];
	int fd = memfd_with(data, size, path);

	if (volume_load(path, &v) == VOL_OK && volume_unlock(&v, fx->kr) == VOL_OK && !v.name_key)
		abort(); /* an unlocked config holds its name key */
	volume_clear(&v);
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fixture *fx = fixture_get();
	uint8_t *fixed = checksum_fixed(data, size, 248, 248);

	parse(fx, data, size);
	parse(fx, fixed, size);
	free(fixed);
	return 0;
}
