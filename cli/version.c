/* kekfs --version: what a bug report needs to say which formats and libraries were in play. */
#include <openssl/crypto.h>
#include <sodium.h>
#include <stdio.h>

#include "../format/header.h"
#include "../fs/fuse_version.h"
#include "../format/volume.h"
#include "../keyring/keyring.h"
#include "cli.h"

/* Prints the versions; the library ones are those loaded now, not those built against. */
int cmd_version(void)
{
	printf("kekfs %s\n", KEKFS_VERSION);
	printf("on-disk format: file header %d, volume config %d, keyring %d (reads and writes "
	       "these only)\n",
	       HEADER_FORMAT, VOL_FORMAT, KR_FORMAT);
	printf("libfuse %s\n", fs_fuse_version());
	printf("%s\n", OpenSSL_version(OPENSSL_VERSION));
	printf("libsodium %s\n", sodium_version_string());
	return 0;
}
