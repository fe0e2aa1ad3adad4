/* libFuzzer: the volume config (.kekfs/volume): load, then unwrap its name key. */
#include <unistd.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fixture *fx = fixture_get();
	struct volume v;
	char path[64];
	int fd = memfd_with(data, size, path);

	if (volume_load(path, &v) == VOL_OK)
		volume_unlock(&v, fx->kr);
	volume_clear(&v);
	close(fd);
	return 0;
}
