/* log.h: one-line-per-event logging to stderr or syslog, with fatal exits. */
#ifndef MTASTS_BASE_LOG_H
#define MTASTS_BASE_LOG_H

#include <stdbool.h>

enum log_level {
	LOG_LEVEL_ERR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/* Until log_init() is called, messages go to stderr at level INFO. */
void log_init(const char *ident, bool to_stderr, enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "err", "warn", "info", "debug"; returns -1 for anything else. */
int log_level_parse(const char *name, enum log_level *level);
const char *log_level_name(enum log_level level);

/* log_warn and fatal append ": strerror(errno)"; the x variants do not. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Cheap guard for debug lines on hot paths: skip formatting entirely. */
#define log_debug_enabled() (log_get_level() >= LOG_LEVEL_DEBUG)

#endif
