/*
 * libFuzzer: the audit log and its pending-failure notes. The input up to its first NUL is
 * audit.log, the rest audit.pending; both are verified, then one record is appended (which
 * parses the last line and moves the notes into the chain).
 */
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "../../keyring/audit.h"
#include "fuzz_common.h"

static void put(const char *dir, const char *name, const uint8_t *data, size_t size)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
		abort();
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fixture *fx = fixture_get();
	const char *dir = scratch_dir();
	struct audit_event ev = {.op = "unlock", .result = "ok", .program = "fuzz"};
	const uint8_t *nul = memchr(data, 0, size);
	size_t log_len = nul ? (size_t)(nul - data) : size;
	unsigned long lines;
	char msg[512];

	put(dir, AUDIT_FILE, data, log_len);
	put(dir, AUDIT_PENDING_FILE, nul ? nul + 1 : data, nul ? size - log_len - 1 : 0);
	audit_verify(dir, fx->kr, &lines, msg, sizeof(msg));
	audit_append(dir, fx->kr, &ev);
	return 0;
}
