/* The command line: where errors meet a person, so messages are made here, once. */
#ifndef KEKFS_CLI_H
#define KEKFS_CLI_H

#define KEKFS_VERSION "0.1.0"

/* Prints "kekfs: MESSAGE" on stderr; returns -1 so callers can 'return cli_error(...)'. */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The same as a command's last word: prints the line and returns the exit status 1, so that
 * commands 'return cli_fail(...)' and helpers 'return cli_error(...)'. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A command-line usage error: "kekfs: MESSAGE" and exit status 2, as kekfs(1) says. */
void cli_usage(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* The usage error for what getopt returned (c, with opterr off and a ':' optstring). */
void cli_bad_option(int c, char **argv, const char *command) __attribute__((noreturn));

int cmd_init(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_umount(int argc, char **argv);
int cmd_rotate(int argc, char **argv);
int cmd_rotate_data(int argc, char **argv); /* rotate --data */
int cmd_status(int argc, char **argv);
int cmd_keys(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_path(int argc, char **argv);
int cmd_shred(int argc, char **argv);
int cmd_token_key(int argc, char **argv); /* keys create-token-key */
int cmd_fsck(int argc, char **argv);
int cmd_version(void); /* --version */

#endif
