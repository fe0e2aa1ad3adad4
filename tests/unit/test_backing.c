/* Unit tests for backing/backing: links, FIFOs and oversized files refused, replacements atomic
 * and link-proof, paths resolved beneath the root with openat2 and with its fallback. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "testutil.h"

#include "../../backing/backing.h"

/* A directory with a regular file, a link to it, a FIFO, a subdirectory and a big file. */
static int fixture(char dir[64])
{
	char p[256];
	uint8_t big[5000] = {0};
	int fd;

	tmpdir_make(dir);
	path_join(p, sizeof(p), dir, "reg");
	file_write(p, (const uint8_t *)"hello", 5);
	path_join(p, sizeof(p), dir, "big");
	file_write(p, big, sizeof(big));
	path_join(p, sizeof(p), dir, "link");
	assert_int_equal(symlink("reg", p), 0);
	path_join(p, sizeof(p), dir, "fifo");
	assert_int_equal(mkfifo(p, 0600), 0);
	path_join(p, sizeof(p), dir, "sub");
	assert_int_equal(mkdir(p, 0700), 0);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

static void test_read_small_refuses_what_kekfs_never_writes(void **state)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	char dir[64];
	int fd = fixture(dir);

	(void)state;
	assert_int_equal(backing_read_small(fd, "reg", 0, 100, &buf, &len), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(buf, "hello", 5);
	free(buf);
	assert_int_equal(backing_read_small(fd, "link", 0, 100, &buf, &len), BACKING_ERR_SYMLINK);
	assert_int_equal(backing_read_small(fd, "fifo", 0, 100, &buf, &len), BACKING_ERR_FIFO);
	assert_int_equal(backing_read_small(fd, "sub", 0, 100, &buf, &len), BACKING_ERR_DIR);
	assert_int_equal(backing_read_small(fd, "big", 0, 100, &buf, &len), BACKING_ERR_TOO_BIG);
	assert_int_equal(backing_read_small(fd, "gone", 0, 100, &buf, &len), -ENOENT);
	assert_int_equal(backing_read_small(fd, "link", 1, 100, &buf, &len), 0); /* user's path */
	free(buf);
	assert_int_equal(backing_open_file(fd, "fifo", O_RDONLY, 0), BACKING_ERR_FIFO);
	assert_int_equal(backing_open_file(fd, "fifo", O_WRONLY, 0), BACKING_ERR_FIFO);
	assert_int_equal(backing_open_file(fd, "link", O_WRONLY | O_CREAT, 0600),
			 BACKING_ERR_SYMLINK);
	assert_int_equal(backing_file_present(fd, "link"), BACKING_ERR_SYMLINK);
	assert_int_equal(backing_file_present(fd, "reg"), 1);
	assert_int_equal(backing_file_present(fd, "gone"), 0);
	assert_true(backing_err_hostile(BACKING_ERR_FIFO) && !backing_err_hostile(-EIO));
	close(fd);
	tmpdir_remove(dir);
}

/* Replacing a link replaces the link, never its target; no temp file is left behind. */
static void test_replace_over_a_link(void **state)
{
	char dir[64], p[256];
	uint8_t got[16];
	size_t len = 0;
	struct stat st;
	int fd = fixture(dir), n = 0;
	DIR *d;

	(void)state;
	assert_int_equal(backing_replace(fd, "link", "new", 3, 0600), 0);
	path_join(p, sizeof(p), dir, "reg");
	assert_int_equal(file_read(p, got, sizeof(got), &len), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(got, "hello", 5);
	path_join(p, sizeof(p), dir, "link");
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	d = opendir(dir);
	while (readdir(d))
		n++;
	closedir(d);
	assert_int_equal(n, 2 + 5); /* ., .., reg, big, link, fifo, sub */
	close(fd);
	tmpdir_remove(dir);
}

/* Opens that must resolve beneath the root and through no link; the number that did not. */
static int beneath_failures(int fd)
{
	int sub = backing_open_beneath(fd, "/sub", O_RDONLY | O_DIRECTORY), up, bad = 0;

	bad += sub < 0;
	if (sub >= 0)
		close(sub);
	bad += backing_open_beneath(fd, "link", O_RDONLY) != -ELOOP;
	bad += backing_open_beneath(fd, "sub/../../reg", O_RDONLY) != -EXDEV;
	bad += symlinkat("..", fd, "sub/up") != 0;
	up = backing_open_beneath(fd, "sub/up/reg", O_RDONLY);
	bad += up != -ELOOP && up != -ENOTDIR; /* a link on the way: never crossed */
	bad += unlinkat(fd, "sub/up", 0) != 0;
	return bad;
}

/* A replacement where O_TMPFILE is missing: nothing left but the new file; 0 if so. */
static int replace_failures(int fd)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	int bad = backing_replace(fd, "reg", "other", 5, 0600) != 0;

	bad += backing_read_small(fd, "reg", 0, 100, &buf, &len) != 0 || len != 5 ||
	       memcmp(buf, "other", 5) != 0;
	free(buf);
	return bad;
}

/*
 * Runs check in a child where one system call fails as on an older kernel or file system:
 * openat2 with ENOSYS (before Linux 5.6), or openat with O_TMPFILE with EOPNOTSUPP.
 */
static void in_child_without(int nr, unsigned flag, int err, int (*check)(int), int fd)
{
	struct sock_filter f[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 4),
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
	    BPF_STMT(BPF_ALU | BPF_AND | BPF_K, flag),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, flag, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
		    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
			_exit(100);
		_exit(check(fd));
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_open_beneath_with_and_without_openat2(void **state)
{
	char dir[64];
	int fd = fixture(dir);

	(void)state;
	assert_int_equal(beneath_failures(fd), 0);
	in_child_without(SYS_openat2, 0, ENOSYS, beneath_failures, fd); /* flag 0: every call */
	close(fd);
	tmpdir_remove(dir);
}

static void test_replace_without_o_tmpfile(void **state)
{
	char dir[64];
	int fd = fixture(dir), n = 0;
	DIR *d;

	(void)state;
	in_child_without(SYS_openat, __O_TMPFILE, EOPNOTSUPP, replace_failures, fd);
	d = opendir(dir);
	while (readdir(d))
		n++;
	closedir(d);
	assert_int_equal(n, 2 + 5); /* no temp file left */
	close(fd);
	tmpdir_remove(dir);
}

/* .kekfs: never a link, never writable by group or others. */
static void test_volume_dir_checks(void **state)
{
	char dir[64], p[256];
	int fd = fixture(dir), kk;

	(void)state;
	assert_int_equal(backing_dir_open(fd, "link", 1), BACKING_ERR_META_LINK);
	assert_int_equal(backing_dir_open(fd, "fifo", 1), BACKING_ERR_NOT_DIR);
	kk = backing_dir_open(fd, "sub", 1);
	assert_true(kk >= 0);
	close(kk);
	path_join(p, sizeof(p), dir, "sub");
	assert_int_equal(chmod(p, 0770), 0);
	assert_int_equal(backing_dir_open(fd, "sub", 1), BACKING_ERR_OWNER);
	close(fd);
	tmpdir_remove(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_read_small_refuses_what_kekfs_never_writes),
	    cmocka_unit_test(test_replace_over_a_link),
	    cmocka_unit_test(test_open_beneath_with_and_without_openat2),
	    cmocka_unit_test(test_replace_without_o_tmpfile),
	    cmocka_unit_test(test_volume_dir_checks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
