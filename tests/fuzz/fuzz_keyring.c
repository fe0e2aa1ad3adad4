/*
 * libFuzzer: the keyring file, opened with the fixture's key file (passphrase slots are
 * skipped, so a mutated Argon2 cost cannot turn the run into a memory test), then every KEK;
 * again with its trailing checksum made right, so the structure behind it is parsed.
 */
#include <unistd.h>

#include "fuzz_common.h"

static void parse(struct fixture *fx, const uint8_t *data, size_t size)
{
	static uint8_t key[32];
	static int have_key;
	struct keyring *kr = NULL;
	struct kek_info info;
	char path[64];
	int fd = memfd_with(data, size, path), state;
	FILE *f;

	if (!have_key) {
		f = fopen(FUZZ_FIXTURE "/key", "rb");
		if (!f || fread(key, 1, sizeof(key), f) != sizeof(key))
			abort();
		fclose(f);
		have_key = 1;
	}
	if (keyring_load(path, fx->vol.id,
			 &(struct kr_secret){.type = KR_SECRET_KEYFILE, .bytes = key, .len = 32},
			 &kr) == KR_OK) {
		for (size_t i = 0; i < keyring_kek_count(kr); i++) {
			keyring_kek_info(kr, i, &info);
			keyring_kek(kr, info.version, &state);
		}
		keyring_active_version(kr);
		keyring_rotation_due(kr);
		keyring_free(kr);
	}
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fixture *fx = fixture_get();
	uint8_t *fixed =
	    checksum_fixed(data, size, size >= 8 ? size - 8 : 0, size >= 8 ? size - 8 : 0);

	parse(fx, data, size);
	if (size >= 8)
		parse(fx, fixed, size);
	free(fixed);
	return 0;
}
