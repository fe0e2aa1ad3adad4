/* libFuzzer: a whole backing file (header and chunks): load, size, and read every byte. */
#include <stdlib.h>
#include <unistd.h>

#include "../../volume/fileio.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fixture *fx = fixture_get();
	struct volume_keys vk = {.vol = &fx->vol, .kr = fx->kr};
	struct file_crypt fc = {0};
	static char *buf; /* before a guard page: the ciphers are not instrumented */
	char path[64];
	uint64_t plain = 0, off = 0;
	ssize_t n = 1;
	int fd = memfd_with(data, size, path);

	if (!buf && !(buf = sodium_malloc(1 << 16)))
		abort();
	geom_init(&vk.geom, fx->vol.cipher, fx->vol.chunk_shift);
	if (fileio_load(fd, &vk, &fc) == 0 && fileio_size(fd, &vk.geom, &plain) == 0)
		for (; n > 0 && off < plain; off += (uint64_t)n)
			n = fileio_read(fd, &vk, &fc, buf, 1 << 16, off);
	fileio_drop(&fc);
	close(fd);
	return 0;
}
