/* bgthread.c: background threads that yield to the event loop. */
#include "config.h"

#include "base/bgthread.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/log.h"
#include "base/xmalloc.h"

struct bgthread_start {
	void *(*fn)(void *);
	void *arg;
	const char *what;
	int nice;
};

static void *
bgthread_main(void *arg)
{
	struct bgthread_start st = *(struct bgthread_start *)arg;

	free(arg);
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), getpriority(PRIO_PROCESS, 0) + st.nice) == -1)
		log_debug("%s: cannot lower its priority: %s", st.what, strerror(errno));
	return st.fn(st.arg);
}

void
bgthread_start(pthread_t *thread, const char *what, int nice, void *(*fn)(void *), void *arg)
{
	struct bgthread_start *st = xmalloc(sizeof(*st));
	sigset_t all, old;
	int rc;

	*st = (struct bgthread_start){ .fn = fn, .arg = arg, .what = what, .nice = nice };
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(thread, NULL, bgthread_main, st);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		fatalx("%s: cannot start a thread: %s", what, strerror(rc));
}
