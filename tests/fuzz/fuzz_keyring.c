/*
 * libFuzzer: the keyring file, opened with the fixture's key file (passphrase slots are
 * skipped, so a mutated Argon2 cost cannot turn the run into a memory test), then every KEK.
 */
#include <unistd.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fixture *fx = fixture_get();
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
	if (keyring_load(path, fx->vol.id, &(struct kr_secret){KR_SECRET_KEYFILE, key, 32}, &kr) ==
	    KR_OK) {
		for (size_t i = 0; i < keyring_kek_count(kr); i++) {
			keyring_kek_info(kr, i, &info);
			keyring_kek(kr, info.version, &state);
		}
		keyring_active_version(kr);
		keyring_rotation_due(kr);
		keyring_free(kr);
	}
	close(fd);
	return 0;
}
