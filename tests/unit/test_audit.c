/* Unit tests for keyring/audit: a line cut short by a full disk never breaks the chain; the
 * one JSON encoder escapes everything; audit.pending notes are parsed strictly and chained
 * as unauthenticated notes. */
#include <errno.h>
#include <fcntl.h>
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

/* Each string comes out as JSON that a strict parser takes back as one string. */
static void test_json_escape_escapes_everything(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	    {"plain", "plain"},
	    {"a\"b", "a\\\"b"},
	    {"back\\slash", "back\\\\slash"},
	    {"2026\",\"op\":\"init", "2026\\\",\\\"op\\\":\\\"init"},
	    {"nl\ncr\rtab\tbel\a", "nl\\u000acr\\u000dtab\\u0009bel\\u0007"},
	    {"del\x7f", "del\\u007f"},
	    {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91",
	     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91"},
	    {"bad\xff\xc3", "bad\\u00ff\\u00c3"},
	    {"overlong\xc0\xaf", "overlong\\u00c0\\u00af"},
	    {"surrogate\xed\xa0\x80", "surrogate\\u00ed\\u00a0\\u0080"},
	    {"past\xf4\x90\x80\x80", "past\\u00f4\\u0090\\u0080\\u0080"},
	    {"", ""},
	};
	char out[128];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(audit_json_escape(out, sizeof(out), cases[i].in),
				 strlen(cases[i].want));
		assert_string_equal(out, cases[i].want);
	}
	assert_int_equal(audit_json_escape(out, sizeof(out), NULL), 0);
	assert_string_equal(out, "");
}

/* A value that does not fit is cut before an escape, never inside one; the length says so. */
static void test_json_escape_never_cuts_an_escape(void **state)
{
	char out[6];

	(void)state;
	assert_int_equal(audit_json_escape(out, sizeof(out), "abcd\"efg"), 9);
	assert_string_equal(out, "abcd");
	assert_int_equal(audit_json_escape(out, sizeof(out), "ab\ncdef"), 12);
	assert_string_equal(out, "ab");
}

static void test_note_parse_takes_a_note(void **state)
{
	struct audit_note n;

	(void)state;
	assert_int_equal(audit_note_parse("2026-11-22T13:18:58Z 1000 4242 kekfs\n", &n), 0);
	assert_string_equal(n.when, "2026-11-22T13:18:58Z");
	assert_int_equal(n.uid, 1000);
	assert_int_equal(n.pid, 4242);
	assert_string_equal(n.program, "kekfs");
	assert_int_equal(audit_note_parse("2026-01-01T00:00:00Z 0 1 a\"b\\c\n", &n), 0);
	assert_string_equal(n.program, "a\"b\\c");
}

/* The forgery of issue 14 and its relatives: none of them is a note. */
static void test_note_parse_refuses_the_rest(void **state)
{
	static const char *const bad[] = {
	    "2026\",\"op\":\"init\",\"x\":\"1 0 1 kekfs\n",
	    "2026-11-22T13:18:58 0 1 kekfs\n",
	    "2026-13-22T13:18:58Z 0 1 kekfs\n",
	    "2026-11-22T24:18:58Z 0 1 kekfs\n",
	    "2026-11-22 13:18:58Z 0 1 kekfs\n",
	    "2026-11-22T13:18:58Z -1 1 kekfs\n",
	    "2026-11-22T13:18:58Z +5 1 kekfs\n",
	    "2026-11-22T13:18:58Z 4294967295 1 kekfs\n",
	    "2026-11-22T13:18:58Z 99999999999 1 kekfs\n",
	    "2026-11-22T13:18:58Z 007 1 kekfs\n",
	    "2026-11-22T13:18:58Z 0 0 kekfs\n",
	    "2026-11-22T13:18:58Z 0 1x kekfs\n",
	    "2026-11-22T13:18:58Z 0 1 \n",
	    "2026-11-22T13:18:58Z 0 1 two words\n",
	    "2026-11-22T13:18:58Z 0 1 sixteen-chars-xx\n",
	    "2026-11-22T13:18:58Z 0 1 tab\tx\n",
	    "2026-11-22T13:18:58Z 0 1 caf\xc3\xa9\n",
	    "2026-11-22T13:18:58Z 0 1 kekfs",
	    "2026-11-22T13:18:58Z  0 1 kekfs\n",
	    "",
	};
	struct audit_note n;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(audit_note_parse(bad[i], &n), -EINVAL);
}

static void write_pending(const struct test_env *e, const char *text)
{
	char path[128];
	FILE *f;

	path_join(path, sizeof(path), e->dir, AUDIT_PENDING_FILE);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static char *read_log(const struct test_env *e)
{
	static char buf[8192];
	char path[128];
	size_t n;
	FILE *f;

	path_join(path, sizeof(path), e->dir, AUDIT_FILE);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* A good note is chained and marked; a forged line is dropped and counted; verify says how
 * many notes the chain holds. */
static void test_pending_notes_are_marked_and_forgeries_dropped(void **state)
{
	struct test_env *e = env_new(AEAD_XCHACHA20_POLY1305, 12);
	unsigned long lines = 0;
	char msg[512] = "", *log;

	(void)state;
	write_pending(e, "2026-11-22T13:18:58Z 1000 77 kekfs\n"
			 "2026\",\"op\":\"destroy\",\"x\":\"1 0 1 kekfs\n"
			 "garbage\n");
	assert_int_equal(audit_append(e->dir, e->kr, &ev), 0);
	log = read_log(e);
	assert_non_null(strstr(log, "\"time\":\"2026-11-22T13:18:58Z\",\"uid\":1000,\"pid\":77,"
				    "\"program\":\"kekfs\",\"op\":\"unlock\""));
	assert_non_null(strstr(log, "\"result\":\"failed\",\"note\":\"unauthenticated\",\"mac\""));
	assert_non_null(strstr(log, "\"op\":\"note-refused\""));
	assert_non_null(strstr(log, "\"detail\":\"2 lines of audit.pending dropped\""));
	assert_null(strstr(log, "\"op\":\"destroy\""));
	assert_int_equal(audit_verify(e->dir, e->kr, &lines, msg, sizeof(msg)), 0);
	assert_int_equal(lines, 3);
	assert_non_null(strstr(msg, "3 records, chain intact; 1 of them unauthenticated notes"));
	env_free(e);
}

/* A FIFO as audit.pending or audit.log neither hangs nor is read; a symlink is not followed. */
static void test_fifo_and_symlink_are_refused(void **state)
{
	struct test_env *e = env_new(AEAD_XCHACHA20_POLY1305, 12);
	char path[128], outside[128], msg[512];
	unsigned long lines;
	struct stat st;

	(void)state;
	path_join(path, sizeof(path), e->dir, AUDIT_PENDING_FILE);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(audit_note_failure(e->dir, &ev), -EINVAL);
	assert_int_equal(audit_append(e->dir, e->kr, &ev), 0);
	assert_int_equal(lstat(path, &st), -1);
	assert_non_null(strstr(read_log(e), "\"detail\":\"1 non-regular file of audit.pending"));
	path_join(path, sizeof(path), e->dir, AUDIT_FILE);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(audit_append(e->dir, e->kr, &ev), -EINVAL);
	assert_int_equal(audit_verify(e->dir, e->kr, &lines, msg, sizeof(msg)), -1);
	assert_non_null(strstr(msg, "is not a regular file"));
	assert_int_equal(unlink(path), 0);
	path_join(outside, sizeof(outside), e->dir, "outside");
	assert_int_equal(symlink(outside, path), 0);
	assert_int_equal(audit_append(e->dir, e->kr, &ev), -EINVAL);
	assert_int_equal(stat(outside, &st), -1);
	env_free(e);
}

/*
 * A .kekfs swapped for a symlink after the volume was opened (the audit log is written last)
 * is never followed: append, note and verify refuse it, and nothing lands where it points.
 */
static void test_kekfs_symlink_is_not_followed(void **state)
{
	struct test_env *e = env_new(AEAD_XCHACHA20_POLY1305, 12);
	char kekfs[128], elsewhere[128], msg[512];
	unsigned long lines;
	struct stat st;

	(void)state;
	path_join(elsewhere, sizeof(elsewhere), e->dir, "elsewhere");
	path_join(kekfs, sizeof(kekfs), e->dir, VOLUME_DIR);
	assert_int_equal(mkdir(elsewhere, 0700), 0);
	assert_int_equal(symlink(elsewhere, kekfs), 0);
	assert_int_not_equal(audit_append(kekfs, e->kr, &ev), 0);
	assert_int_not_equal(audit_note_failure(kekfs, &ev), 0);
	assert_int_equal(audit_verify(kekfs, e->kr, &lines, msg, sizeof(msg)), -1);
	assert_null(strstr(msg, "Unknown error"));
	path_join(elsewhere, sizeof(elsewhere), e->dir, "elsewhere/" AUDIT_FILE);
	assert_int_equal(stat(elsewhere, &st), -1);
	path_join(elsewhere, sizeof(elsewhere), e->dir, "elsewhere/" AUDIT_PENDING_FILE);
	assert_int_equal(stat(elsewhere, &st), -1);
	env_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_short_write_leaves_no_torn_line),
	    cmocka_unit_test(test_json_escape_escapes_everything),
	    cmocka_unit_test(test_json_escape_never_cuts_an_escape),
	    cmocka_unit_test(test_note_parse_takes_a_note),
	    cmocka_unit_test(test_note_parse_refuses_the_rest),
	    cmocka_unit_test(test_pending_notes_are_marked_and_forgeries_dropped),
	    cmocka_unit_test(test_fifo_and_symlink_are_refused),
	    cmocka_unit_test(test_kekfs_symlink_is_not_followed),
	};

	if (secmem_init() != 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
