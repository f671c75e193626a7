/* log.c: one-line-per-event logging to stderr or syslog, with fatal exits. */
#include "config.h"

#include "base/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>
#include <time.h>

static bool log_to_stderr = true;
static bool log_to_journal; /* stderr is the systemd journal: "<prio>" prefixes, no time */
static enum log_level log_level = LOG_LEVEL_INFO;
static const char *log_ident = "mtastsd";

static const char *const level_names[] = {
	[LOG_LEVEL_ERR] = "err",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

static const int level_prio[] = {
	[LOG_LEVEL_ERR] = LOG_ERR,
	[LOG_LEVEL_WARN] = LOG_WARNING,
	[LOG_LEVEL_INFO] = LOG_INFO,
	[LOG_LEVEL_DEBUG] = LOG_DEBUG,
};

/*
 * systemd sets JOURNAL_STREAM to the device and inode of the stream it connected to stderr;
 * when they match, each line's priority can be given as a "<N>" prefix (sd-daemon(3)).
 */
static bool
log_stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2 ||
	    fstat(STDERR_FILENO, &st) == -1)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void
log_init(const char *ident, bool to_stderr, enum log_level level)
{
	log_ident = ident;
	log_to_stderr = to_stderr;
	log_to_journal = to_stderr && log_stderr_is_journal();
	log_level = level;
	if (!to_stderr)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_set_level(enum log_level level)
{
	log_level = level;
}

enum log_level
log_get_level(void)
{
	return log_level;
}

int
log_level_parse(const char *name, enum log_level *level)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*level = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

const char *
log_level_name(enum log_level level)
{
	return level_names[level];
}

static void log_vemit(enum log_level level, const char *errstr, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));

static void
log_vemit(enum log_level level, const char *errstr, const char *fmt, va_list ap)
{
	char msg[2048];
	int n;

	if (level > log_level)
		return;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		return;
	if (errstr != NULL)
		snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg), ": %s", errstr);
	if (log_to_journal) {
		/* The journal stamps time and identifier itself. */
		fprintf(stderr, "<%d>%s\n", level_prio[level], msg);
	} else if (log_to_stderr) {
		char ts[32];
		struct timespec now;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &now);
		gmtime_r(&now.tv_sec, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
		fprintf(stderr, "%s.%03ldZ %s[%s]: %s\n", ts, now.tv_nsec / 1000000L, log_ident,
		        level_names[level], msg);
	} else {
		syslog(level_prio[level], "%s", msg);
	}
}

#define LOG_BODY(level, errstr)                                                                    \
	do {                                                                                       \
		va_list ap;                                                                        \
		va_start(ap, fmt);                                                                 \
		log_vemit((level), (errstr), fmt, ap);                                             \
		va_end(ap);                                                                        \
	} while (0)

void
log_warn(const char *fmt, ...)
{
	const char *errstr = strerror(errno);

	LOG_BODY(LOG_LEVEL_WARN, errstr);
}

void
log_warnx(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_WARN, NULL);
}

void
log_info(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_INFO, NULL);
}

void
log_debug(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_DEBUG, NULL);
}

void
log_err(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_ERR, NULL);
}

void
fatal(const char *fmt, ...)
{
	const char *errstr = strerror(errno);

	LOG_BODY(LOG_LEVEL_ERR, errstr);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_ERR, NULL);
	exit(1);
}
