/* Unit tests for keyring/audit: a line cut short by a full disk never breaks the chain. */
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "testutil.h"

#include "../../crypto/aead.h"
#include "../../keyring/audit.h"

static const struct audit_event ev = {
    .op = "rotate", .kek = 2, .result = "ok", .program = "unit", .uid = 0, .pid = 1};

static off_t log_size(const struct test_env *e)
{
	char path[128];
	struct stat st;

	path_join(path, sizeof(path), e->dir, AUDIT_FILE);
	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

static void verify_lines(const struct test_env *e, unsigned long want)
{
	unsigned long lines = 0;
	char msg[256] = "";

	assert_int_equal(audit_verify(e->dir, e->kr, &lines, msg, sizeof(msg)), 0);
	assert_int_equal(lines, want);
}

/* A write that stops part-way (RLIMIT_FSIZE stands in for a full disk) fails, leaves the log
 * as it was, and the next append once there is room again chains on from the last line. */
static void test_short_write_leaves_no_torn_line(void **state)
{
	struct test_env *e = env_new(AEAD_XCHACHA20_POLY1305, 12);
	struct rlimit old, lim;
	off_t size;
	int rc;

	(void)state;
	assert_int_equal(audit_append(e->dir, e->kr, &ev), 0);
	assert_int_equal(audit_append(e->dir, e->kr, &ev), 0);
	size = log_size(e);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)size + 10;
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	rc = audit_append(e->dir, e->kr, &ev);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_int_equal(rc, -ENOSPC);
	assert_int_equal(log_size(e), size);
	verify_lines(e, 2);
	assert_int_equal(audit_append(e->dir, e->kr, &ev), 0);
	verify_lines(e, 3);
	env_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_short_write_leaves_no_torn_line),
	};

	if (secmem_init() != 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
