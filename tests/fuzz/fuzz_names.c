/*
 * libFuzzer: encrypted names. The first byte picks the parser: a backing name (base64url
 * AES-SIV) in the root directory, a user.* xattr name, the contents of a long name's side
 * file (stored under the name its own hash gives, so the hash check passes and decoding runs),
 * or a sealed symlink target.
 */
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "../../format/namedir.h"
#include "../../format/objcrypt.h"
#include "fuzz_common.h"

static struct name_keys *keys(struct fixture *fx)
{
	static struct name_keys *nk;

	if (!nk && !(nk = name_keys_new(fx->vol.name_key)))
		abort();
	return nk;
}

/* Writes rest as the side file of the long name its text hashes to, reads and decrypts it. */
/* What a decoder that accepted a name promises: that many bytes, then a NUL, no '/'. */
static void decoded_name_check(int n, const char *out)
{
	if (n >= 0 && (n > NAME_PLAIN_MAX || strlen(out) != (size_t)n || memchr(out, '/', n)))
		abort();
}

static void long_side(struct fixture *fx, int dirfd, const char *text, const uint8_t *rest,
		      size_t len, char *out)
{
	char backing[NAME_LONG_LEN + 1], side[NAME_LONG_LEN + 2], enc[NAME_ENC_SIZE];
	int fd;

	name_long_backing(text, backing);
	side[0] = '.';
	memcpy(side + 1, backing, sizeof(backing));
	fd = openat(dirfd, side, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || (len && write(fd, rest, len) != (ssize_t)len))
		abort();
	close(fd);
	if (namedir_long_read(dirfd, backing, enc) == 0)
		decoded_name_check(name_decrypt(keys(fx), fx->vol.root_dir_id, enc, out), out);
	unlinkat(dirfd, side, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fixture *fx = fixture_get();
	static int dirfd = -1;
	/*
	 * 256 bytes, the most every decoder promises to write, ending at a guard page: OpenSSL
	 * and libsodium are not instrumented, so ASan alone would miss their overflows.
	 */
	char text[1024], *out = sodium_malloc(256);
	size_t n;

	if (size < 1 || !out) {
		sodium_free(out);
		return 0;
	}
	if (dirfd < 0 && (dirfd = open(scratch_dir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		abort();
	n = size - 1 < sizeof(text) - 1 ? size - 1 : sizeof(text) - 1;
	memcpy(text, data + 1, n);
	text[n] = '\0';
	switch (data[0] % 4) {
	case 0:
		decoded_name_check(name_decrypt(keys(fx), fx->vol.root_dir_id, text, out), out);
		name_is_long(text);
		break;
	case 1:
		if (xattr_name_decrypt(keys(fx), text, out) == 0 && strlen(out) > 255)
			abort(); /* an accepted xattr name fits its 256-byte buffer */
		break;
	case 2:
		long_side(fx, dirfd, text, data + 1, size - 1, out);
		break;
	default:
		if (symlink_open(fx->vol.name_key, fx->vol.id, text, out, 256) >= 0 &&
		    strlen(out) > 255)
			abort(); /* an opened target fits out, NUL included */
	}
	sodium_free(out);
	return 0;
}
