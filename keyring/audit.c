#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "../backing/backing.h"
#include "../crypto/secmem.h"

#define AUDIT_MAC_LEN 32
#define AUDIT_LINE_MAX 1024
#define AUDIT_MAC_FIELD ",\"mac\":\""
#define AUDIT_NOTE_FIELD ",\"note\":\"unauthenticated\""
#define AUDIT_PENDING_MAX 256 /* notes chained at one unlock; more are dropped */

struct chain {
	unsigned long long seq;
	uint8_t mac[AUDIT_MAC_LEN];
};

void audit_event_self(struct audit_event *ev)
{
	ev->uid = getuid();
	ev->pid = getpid();
}

/* The length of the valid UTF-8 sequence at s (1 to 4), or 0 if the byte there starts none:
 * overlong forms, surrogates and code points past U+10FFFF are not UTF-8. */
static size_t utf8_seq_len(const unsigned char *s)
{
	uint32_t cp;
	size_t n;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1fu;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0fu;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07u;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3fu);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

size_t audit_json_escape(char *out, size_t size, const char *in)
{
	const unsigned char *s = (const unsigned char *)(in ? in : "");
	size_t len = 0, written = 0;

	while (*s) {
		char esc[8];
		size_t n = utf8_seq_len(s), m;

		if (*s == '"' || *s == '\\')
			m = (size_t)snprintf(esc, sizeof(esc), "\\%c", *s), n = 1;
		else if (n == 0 || *s < 0x20 || *s == 0x7f)
			m = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", *s), n = 1;
		else
			m = n, memcpy(esc, s, n);
		/* once one escape does not fit, nothing after it is written */
		if (written == len && len + m < size)
			memcpy(out + written, esc, m), written += m;
		len += m;
		s += n;
	}
	if (size)
		out[written] = '\0';
	return len;
}

/* An audit line under construction; too long for the line is an error, never cut short. */
struct line_buf {
	char *p;
	size_t size, len;
};

/* Where the next text goes and how much room is left there (none once the line is full). */
static char *lb_room(struct line_buf *b, size_t *room)
{
	*room = b->len < b->size ? b->size - b->len : 0;
	return b->p + (b->len < b->size ? b->len : b->size - 1);
}

static void lb_printf(struct line_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void lb_printf(struct line_buf *b, const char *fmt, ...)
{
	size_t room;
	char *at = lb_room(b, &room);
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(at, room, fmt, ap);
	va_end(ap);
	b->len += n > 0 ? (size_t)n : 0;
}

/* ,"key":"value" with the value escaped by the one encoder every string field goes through. */
static void lb_string(struct line_buf *b, const char *key, const char *value)
{
	size_t room;
	char *at;

	lb_printf(b, ",\"%s\":\"", key);
	at = lb_room(b, &room);
	b->len += audit_json_escape(at, room, value);
	lb_printf(b, "\"");
}

/* The name in /proc/PID/comm, "unknown" if there is none. */
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
	snprintf(out, size, "%s", comm[0] ? comm : "unknown");
}

/* The line without its MAC: what the MAC covers, with the previous MAC before it. A note
 * from audit.pending says so in the chain: nothing authenticated what it says. */
static int line_body(char *out, size_t size, unsigned long long seq, const char *when,
		     const struct audit_event *ev, uint64_t generation)
{
	struct line_buf b = {.p = out, .size = size};
	char prog[64];

	if (ev->program)
		snprintf(prog, sizeof(prog), "%s", ev->program);
	else
		program_of(ev->pid, prog, sizeof(prog));
	lb_printf(&b, "{\"seq\":%llu", seq);
	lb_string(&b, "time", when);
	lb_printf(&b, ",\"uid\":%u,\"pid\":%d", (unsigned)ev->uid, (int)ev->pid);
	lb_string(&b, "program", prog);
	lb_string(&b, "op", ev->op);
	lb_printf(&b, ",\"kek\":%u,\"generation\":%llu", ev->kek, (unsigned long long)generation);
	lb_string(&b, "detail", ev->detail);
	lb_string(&b, "result", ev->result);
	if (ev->note)
		lb_printf(&b, AUDIT_NOTE_FIELD);
	return b.len < size ? (int)b.len : -1;
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
	keyring_subkey(kr, KDF_LABEL_AUDIT_LOG, key);
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

/*
 * Opens a file of .kekfs that whoever writes the backing directory may have replaced: the
 * directory through backing/backing.h's checks, the file never through a symlink, never waiting on
 * a FIFO, and only if it is a regular file (-EINVAL if it is something else). *dirfd, if
 * asked for, is the directory, open whenever it could be opened: the caller closes it.
 */
static int open_regular(const char *dir, const char *name, int flags, int *dirfd)
{
	char path[PATH_MAX];
	const char *last;
	int in_volume, dfd, fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return -ENAMETOOLONG;
	dfd = backing_dir_of(path, &last, &in_volume);
	if (dfd < 0)
		return dfd;
	fd = backing_open_file(dfd, last, flags, 0600);
	if (fd == BACKING_ERR_SYMLINK || fd == BACKING_ERR_FIFO || fd == BACKING_ERR_DIR ||
	    fd == BACKING_ERR_SPECIAL)
		fd = -EINVAL;
	if (dirfd)
		*dirfd = dfd;
	else
		close(dfd);
	return fd;
}

/* Digits only, no sign and no leading zero, at most max; advances *p past them. */
static int parse_decimal(const char **p, unsigned long max, unsigned long *out)
{
	const char *s = *p;
	unsigned long v = 0;

	if (s[0] < '0' || s[0] > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9'))
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (max - (unsigned long)(*s - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (unsigned long)(*s - '0');
	}
	*p = s;
	*out = v;
	return 0;
}

/* YYYY-MM-DDTHH:MM:SSZ, as utc_now writes it, with every field in its range. */
static int parse_time(const char *s)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
	int y, mo, d, h, mi, sec;

	for (size_t i = 0; shape[i]; i++)
		if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
			return -EINVAL;
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ", &y, &mo, &d, &h, &mi, &sec) != 6 || mo < 1 ||
	    mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -EINVAL;
	return 0;
}

int audit_note_parse(const char *line, struct audit_note *n)
{
	const char *p = line + AUDIT_TIME_LEN;
	unsigned long uid, pid;
	size_t len;

	if (parse_time(line) != 0 || *p++ != ' ' || parse_decimal(&p, UINT32_MAX - 1, &uid) != 0 ||
	    *p++ != ' ' || parse_decimal(&p, INT_MAX, &pid) != 0 || pid == 0 || *p++ != ' ')
		return -EINVAL;
	for (len = 0; p[len] > 0x20 && p[len] < 0x7f; len++)
		;
	if (len == 0 || len > AUDIT_PROGRAM_MAX || strcmp(p + len, "\n") != 0)
		return -EINVAL;
	memcpy(n->when, line, AUDIT_TIME_LEN);
	n->when[AUDIT_TIME_LEN] = '\0';
	memcpy(n->program, p, len);
	n->program[len] = '\0';
	n->uid = (uid_t)uid;
	n->pid = (pid_t)pid;
	return 0;
}

/* Chains one failed unlock from audit.pending, marked as a note nothing authenticated. */
static int note_write(int fd, const struct keyring *kr, struct chain *c, const struct audit_note *n)
{
	struct audit_event ev = {.op = "unlock",
				 .result = "failed",
				 .detail = "noted without a key; chained at the next unlock",
				 .program = n->program,
				 .uid = n->uid,
				 .pid = n->pid,
				 .note = 1};

	return chain_write(fd, kr, c, n->when, &ev);
}

/* Chains how many lines of audit.pending were not notes and were dropped, if any were. */
static int refusal_write(int fd, const struct keyring *kr, struct chain *c, unsigned long refused,
			 const char *what)
{
	char detail[128], when[32];
	struct audit_event ev = {.op = "note-refused", .detail = detail, .result = "refused"};

	if (!refused)
		return 0;
	audit_event_self(&ev);
	utc_now(when);
	snprintf(detail, sizeof(detail), "%lu %s of audit.pending dropped", refused, what);
	return chain_write(fd, kr, c, when, &ev);
}

/*
 * Moves the failed unlocks noted without a key into the chain, then removes the note file.
 * Lines that are not well-formed notes, and notes past AUDIT_PENDING_MAX, are not chained;
 * a record says how many were dropped. A note file that is not a regular file is removed.
 */
static int pending_flush(const char *dir, int fd, const struct keyring *kr, struct chain *c)
{
	char line[256];
	unsigned long refused = 0, chained = 0;
	struct audit_note n;
	int dirfd = -1, rc = 0, pfd = open_regular(dir, AUDIT_PENDING_FILE, O_RDONLY, &dirfd);
	FILE *f = pfd >= 0 ? fdopen(pfd, "r") : NULL;

	if (pfd == -EINVAL) { /* a FIFO, link or directory put there: gone, and said so */
		rc = unlinkat(dirfd, AUDIT_PENDING_FILE, 0) == 0
			 ? refusal_write(fd, kr, c, 1, "non-regular file")
			 : -errno;
		goto close_dir;
	}
	if (!f) {
		rc = pfd >= 0 ? -errno : pfd == -ENOENT ? 0 : pfd;
		if (pfd >= 0)
			close(pfd);
		goto close_dir;
	}
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		int whole = strchr(line, '\n') != NULL, ch = 0;

		while (!whole && (ch = fgetc(f)) != EOF && ch != '\n')
			; /* the rest of a line too long to be a note */
		if (chained < AUDIT_PENDING_MAX && audit_note_parse(line, &n) == 0)
			rc = note_write(fd, kr, c, &n), chained++;
		else
			refused++;
	}
	fclose(f);
	if (rc == 0)
		rc = refusal_write(fd, kr, c, refused, "lines");
	if (rc == 0 && unlinkat(dirfd, AUDIT_PENDING_FILE, 0) != 0)
		rc = -errno;
close_dir:
	if (dirfd >= 0)
		close(dirfd);
	return rc;
}

int audit_append(const char *dir, const struct keyring *kr, const struct audit_event *ev)
{
	char when[32];
	struct chain c;
	int fd, rc;

	fd = open_regular(dir, AUDIT_FILE, O_RDWR | O_CREAT | O_APPEND, NULL);
	if (fd < 0)
		return fd;
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
	char when[32], line[128], prog[AUDIT_PROGRAM_MAX + 1];
	int fd, n;

	fd = open_regular(dir, AUDIT_PENDING_FILE, O_WRONLY | O_CREAT | O_APPEND, NULL);
	if (fd < 0)
		return fd;
	utc_now(when);
	program_of(ev->pid, prog, sizeof(prog));
	for (char *p = prog; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f)
			*p = '_'; /* a note's program is one word of printable ASCII */
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

/* Opens audit.log to verify it; NULL with why not in msg. */
static FILE *verify_open(const char *dir, char *msg, size_t msg_size)
{
	int fd = open_regular(dir, AUDIT_FILE, O_RDONLY, NULL);
	FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;

	if (fd == -EINVAL)
		snprintf(msg, msg_size,
			 "%s/%s is not a regular file (a symlink, FIFO or directory was put "
			 "there): keep it as evidence, move it away and restore the log",
			 dir, AUDIT_FILE);
	else if (!f)
		snprintf(msg, msg_size, "cannot read %s/%s: %s", dir, AUDIT_FILE,
			 fd < 0 ? backing_strerror(fd) : strerror(errno));
	if (!f && fd >= 0)
		close(fd);
	return f;
}

int audit_verify(const char *dir, const struct keyring *kr, unsigned long *lines, char *msg,
		 size_t msg_size)
{
	char line[AUDIT_LINE_MAX + 256];
	struct chain c = {0}, got;
	uint8_t want[AUDIT_MAC_LEN];
	unsigned long notes = 0;
	size_t body_len;
	int bad = 0;
	FILE *f = verify_open(dir, msg, msg_size);

	*lines = 0;
	if (!f)
		return -1;
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
		notes += body_len > strlen(AUDIT_NOTE_FIELD) &&
			 memcmp(line + body_len - strlen(AUDIT_NOTE_FIELD), AUDIT_NOTE_FIELD,
				strlen(AUDIT_NOTE_FIELD)) == 0;
		c = got;
	}
	fclose(f);
	if (!bad)
		snprintf(msg, msg_size,
			 "%lu records, chain intact; %lu of them unauthenticated notes (failed "
			 "unlocks noted without a key: their time, uid, pid and program are as "
			 "found in %s)",
			 *lines, notes, AUDIT_PENDING_FILE);
	return bad ? -1 : 0;
}
