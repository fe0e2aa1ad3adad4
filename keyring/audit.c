#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "../crypto/secmem.h"

#define AUDIT_MAC_LEN 32
#define AUDIT_LINE_MAX 1024
#define AUDIT_MAC_FIELD ",\"mac\":\""

struct chain {
	unsigned long long seq;
	uint8_t mac[AUDIT_MAC_LEN];
};

void audit_event_self(struct audit_event *ev)
{
	ev->uid = getuid();
	ev->pid = getpid();
}

/* Keeps a field printable and JSON-safe without escaping: anything else becomes '_'. */
static void sanitize(char *out, size_t size, const char *in)
{
	size_t n = 0;

	for (; in && *in && n + 1 < size; in++)
		out[n++] = (*in >= 0x20 && *in < 0x7f && *in != '"' && *in != '\\') ? *in : '_';
	out[n] = '\0';
}

static void program_of(pid_t pid, char *out, size_t size)
{
	char path[64], comm[64] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	f = fopen(path, "r");
	if (f) {
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = '\0';
		fclose(f);
	}
	comm[strcspn(comm, "\n")] = '\0';
	sanitize(out, size, comm[0] ? comm : "unknown");
}

/* The line without its MAC: what the MAC covers, with the previous MAC before it. */
static int line_body(char *out, size_t size, unsigned long long seq, const char *when,
		     const struct audit_event *ev, uint64_t generation)
{
	char prog[32], op[32], detail[128], result[64];

	if (ev->program)
		sanitize(prog, sizeof(prog), ev->program);
	else
		program_of(ev->pid, prog, sizeof(prog));
	sanitize(op, sizeof(op), ev->op);
	sanitize(detail, sizeof(detail), ev->detail);
	sanitize(result, sizeof(result), ev->result);
	return snprintf(out, size,
			"{\"seq\":%llu,\"time\":\"%s\",\"uid\":%u,\"pid\":%d,\"program\":\"%s\","
			"\"op\":\"%s\",\"kek\":%u,\"generation\":%llu,\"detail\":\"%s\","
			"\"result\":\"%s\"",
			seq, when, (unsigned)ev->uid, (int)ev->pid, prog, op, ev->kek,
			(unsigned long long)generation, detail, result);
}

static void chain_mac(const struct keyring *kr, const uint8_t prev[AUDIT_MAC_LEN], const char *body,
		      size_t len, uint8_t out[AUDIT_MAC_LEN])
{
	uint8_t *key = secmem_alloc(32);
	crypto_generichash_state st;

	if (!key) {
		memset(out, 0, AUDIT_MAC_LEN); /* will not verify: better than a crash */
		return;
	}
	keyring_subkey(kr, "kekfs audit log v1", key);
	crypto_generichash_init(&st, key, 32, AUDIT_MAC_LEN);
	crypto_generichash_update(&st, prev, AUDIT_MAC_LEN);
	crypto_generichash_update(&st, (const uint8_t *)body, len);
	crypto_generichash_final(&st, out, AUDIT_MAC_LEN);
	secmem_free(key);
}

/* Splits a line into body (before the MAC field) and its MAC and seq; -1 if malformed. */
static int line_parse(char *line, struct chain *c, size_t *body_len)
{
	char *m = strstr(line, AUDIT_MAC_FIELD);
	size_t bin_len = 0;

	if (!m || sscanf(line, "{\"seq\":%llu,", &c->seq) != 1)
		return -1;
	*body_len = (size_t)(m - line);
	m += strlen(AUDIT_MAC_FIELD);
	if (sodium_hex2bin(c->mac, AUDIT_MAC_LEN, m, strlen(m), "\"}\n", &bin_len, NULL) != 0 ||
	    bin_len != AUDIT_MAC_LEN)
		return -1;
	return 0;
}

/* The chain state after the log's last line (zero for an empty log). */
static int chain_tail(int fd, struct chain *c)
{
	char buf[4 * AUDIT_LINE_MAX + 1], *last;
	off_t end = lseek(fd, 0, SEEK_END),
	      start = end > (off_t)(sizeof(buf) - 1) ? end - (off_t)(sizeof(buf) - 1) : 0;
	ssize_t n = pread(fd, buf, (size_t)(end - start), start);
	size_t body_len;

	memset(c, 0, sizeof(*c));
	if (n <= 0)
		return n == 0 ? 0 : -errno;
	buf[n] = '\0';
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	last = strrchr(buf, '\n');
	return line_parse(last ? last + 1 : buf, c, &body_len) == 0 ? 0 : -EBADMSG;
}

static void utc_now(char out[32])
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/*
 * Appends one line, chained to c, and advances c. A line cut short (a full disk) is cut off
 * again: left there, it would end the chain for every later append and for audit verify.
 */
static int chain_write(int fd, const struct keyring *kr, struct chain *c, const char *when,
		       const struct audit_event *ev)
{
	char line[AUDIT_LINE_MAX + 128], hex[2 * AUDIT_MAC_LEN + 1];
	int len = line_body(line, AUDIT_LINE_MAX, c->seq + 1, when, ev, keyring_generation(kr));
	off_t end = lseek(fd, 0, SEEK_END);
	ssize_t n;
	int rc;

	if (len < 0 || len >= AUDIT_LINE_MAX)
		return -EINVAL;
	chain_mac(kr, c->mac, line, (size_t)len, c->mac);
	c->seq++;
	sodium_bin2hex(hex, sizeof(hex), c->mac, AUDIT_MAC_LEN);
	len += snprintf(line + len, sizeof(line) - (size_t)len, "%s%s\"}\n", AUDIT_MAC_FIELD, hex);
	n = write(fd, line, (size_t)len);
	if (n == len)
		return 0;
	rc = n < 0 ? -errno : -ENOSPC;
	if (end < 0 || ftruncate(fd, end) != 0)
		rc = -EIO;
	return rc;
}

/* Moves failed unlocks noted without a key into the chain, then drops the note file. */
static int pending_flush(const char *dir, int fd, const struct keyring *kr, struct chain *c)
{
	char path[PATH_MAX], when[32], line[256], prog[32];
	unsigned uid;
	int pid, rc = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, AUDIT_PENDING_FILE);
	f = fopen(path, "r");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		struct audit_event ev = {.op = "unlock",
					 .result = "failed",
					 .detail =
					     "noted without a key; chained at the next unlock"};

		if (sscanf(line, "%31s %u %d %31s", when, &uid, &pid, prog) != 4)
			continue;
		ev.program = prog;
		ev.uid = uid;
		ev.pid = pid;
		rc = chain_write(fd, kr, c, when, &ev);
	}
	fclose(f);
	return rc == 0 && unlink(path) != 0 ? -errno : rc;
}

int audit_append(const char *dir, const struct keyring *kr, const struct audit_event *ev)
{
	char path[PATH_MAX], when[32];
	struct chain c;
	int fd, rc;

	snprintf(path, sizeof(path), "%s/%s", dir, AUDIT_FILE);
	fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	flock(fd, LOCK_EX);
	rc = chain_tail(fd, &c);
	if (rc == 0)
		rc = pending_flush(dir, fd, kr, &c);
	utc_now(when);
	if (rc == 0)
		rc = chain_write(fd, kr, &c, when, ev);
	if (rc == 0 && fdatasync(fd) != 0)
		rc = -errno;
	close(fd);
	return rc;
}

int audit_note_failure(const char *dir, const struct audit_event *ev)
{
	char path[PATH_MAX], when[32], line[128], prog[32];
	int fd, n;

	snprintf(path, sizeof(path), "%s/%s", dir, AUDIT_PENDING_FILE);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	utc_now(when);
	program_of(ev->pid, prog, sizeof(prog));
	n = snprintf(line, sizeof(line), "%s %u %d %s\n", when, (unsigned)ev->uid, (int)ev->pid,
		     prog);
	n = write(fd, line, (size_t)n) == n ? 0 : -EIO;
	close(fd);
	return n;
}

/* Why line number `at` breaks the chain whose state before it is c. */
static void describe_break(unsigned long at, const struct chain *c, const struct chain *got,
			   char *msg, size_t size)
{
	if (got->seq > c->seq + 1)
		snprintf(msg, size,
			 "line %lu: seq %llu follows %llu: a line before it is missing, or lines "
			 "are out of order",
			 at, got->seq, c->seq);
	else if (got->seq <= c->seq)
		snprintf(msg, size, "line %lu: out of order or inserted (seq %llu follows %llu)",
			 at, got->seq, c->seq);
	else
		snprintf(msg, size,
			 "line %lu (seq %llu): edited or inserted (its MAC does not match)", at,
			 got->seq);
}

int audit_verify(const char *dir, const struct keyring *kr, unsigned long *lines, char *msg,
		 size_t msg_size)
{
	char path[PATH_MAX], line[AUDIT_LINE_MAX + 256];
	struct chain c = {0}, got;
	uint8_t want[AUDIT_MAC_LEN];
	size_t body_len;
	int bad = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, AUDIT_FILE);
	f = fopen(path, "r");
	*lines = 0;
	if (!f) {
		snprintf(msg, msg_size, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	while (!bad && fgets(line, sizeof(line), f)) {
		++*lines;
		bad = line_parse(line, &got, &body_len) != 0;
		if (bad) {
			snprintf(msg, msg_size, "line %lu: not an audit record (damaged)", *lines);
			break;
		}
		chain_mac(kr, c.mac, line, body_len, want);
		bad = got.seq != c.seq + 1 || sodium_memcmp(want, got.mac, AUDIT_MAC_LEN) != 0;
		if (bad)
			describe_break(*lines, &c, &got, msg, msg_size);
		c = got;
	}
	fclose(f);
	return bad ? -1 : 0;
}
