/* bgthread.h: background threads that yield to the event loop. */
#ifndef MTASTS_BASE_BGTHREAD_H
#define MTASTS_BASE_BGTHREAD_H

#include <pthread.h>

/*
 * Runs fn(arg) on a new thread with every signal blocked (signals are the event loop's) and
 * its nice value raised by nice (per thread on Linux), so that its work yields to the loop
 * when they share a core. Running out of threads is fatal; what names the thread in that
 * message.
 */
void bgthread_start(pthread_t *thread, const char *what, int nice, void *(*fn)(void *), void *arg);

#endif
