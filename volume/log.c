#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static int log_target = LOG_TO_STDERR;
static int log_fd = STDERR_FILENO;
static int log_level = LOG_DEBUG;

void log_set_level(int prio)
{
	log_level = prio;
}

int log_open(int target, const char *path)
{
	log_target = target;
	if (target == LOG_TO_SYSLOG) {
		openlog("kekfs", LOG_PID, LOG_DAEMON);
		return 0;
	}
	if (target == LOG_TO_FILE) {
		int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0)
			return -errno;
		log_fd = fd;
	}
	return 0;
}

static const char *prio_name(int prio)
{
	switch (prio) {
	case LOG_ERR:
		return "error";
	case LOG_WARNING:
		return "warning";
	case LOG_NOTICE:
	case LOG_INFO:
		return "info";
	default:
		return "debug";
	}
}

void log_msg(int prio, const char *fmt, ...)
{
	char line[1024];
	struct tm tm;
	time_t now = time(NULL);
	va_list ap;
	int n;

	if (prio > log_level)
		return;
	va_start(ap, fmt);
	if (log_target == LOG_TO_SYSLOG) {
		vsyslog(prio, fmt, ap);
		va_end(ap);
		return;
	}
	gmtime_r(&now, &tm);
	n = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%SZ ", &tm);
	n += snprintf(line + n, sizeof(line) - (size_t)n, "kekfs[%ld] %s: ", (long)getpid(),
		      prio_name(prio));
	if (n < (int)sizeof(line))
		n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(log_fd, line, (size_t)n);
}
