/*
 * fetch.c: the fetch API, with transfers on a worker thread.
 *
 * A TLS handshake costs about a millisecond of CPU in steps that cannot be split; on the
 * caller's loop a burst of new domains would hold up every cached answer behind them. The
 * transfers (io/https.c) run on the worker's own event loop at a lower priority instead, and
 * only requests and results cross between the threads, through two queues under one mutex
 * and a pipe each way that wakes the other side.
 *
 * A request's state says who holds it; it changes only under the mutex:
 *   QUEUED     in f->to_worker as a start; fetch_cancel frees it there
 *   RUNNING    the worker's; fetch_cancel queues it back as a cancel (CANCELLING)
 *   CANCELLING the worker cancels the transfer, then hands it back (ACKED)
 *   DONE       in f->to_main with its result; fetch_cancel frees it there
 *   ACKED      in f->to_main, to be freed
 * The caller's thread alone frees requests, and the worker never touches one it handed back.
 */
#include "config.h"

#include "io/fetch.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/event.h>

#include "base/bgthread.h"
#include "base/log.h"
#include "base/xmalloc.h"
#include "io/certinfo.h"
#include "io/https.h"

/* How much the worker yields to the caller's loop when they share a core. */
#define FETCH_WORKER_NICE 10

enum fetch_req_state {
	FETCH_QUEUED,
	FETCH_RUNNING,
	FETCH_CANCELLING,
	FETCH_DONE,
	FETCH_ACKED,
};

struct fetch_req {
	TAILQ_ENTRY(fetch_req) all; /* f->reqs: every live request (caller's thread) */
	TAILQ_ENTRY(fetch_req) q;   /* f->to_worker or f->to_main (under f->mu) */
	struct fetch *f;
	enum fetch_req_state state; /* under f->mu */
	fetch_cb cb;
	void *arg;
	bool delivering; /* its callback runs (caller's thread) */

	/* The request, copied; read by the worker. */
	char *host;
	unsigned port;
	char *path;
	char *addrs[HTTPS_ADDRS_MAX];
	size_t naddrs;

	struct https_req *inner; /* the worker's */

	/* The result, copied by the worker before handing it back (DONE). */
	struct fetch_result res;
	char *body;
	char *content_type;
	char *error;
	char *remote_addr;
	char *cert_subject;
	char *cert_issuer;
	char *cert_not_after;
	struct certinfo cert;
};

TAILQ_HEAD(fetch_req_list, fetch_req);

struct fetch {
	struct event_base *base; /* the caller's */
	struct event *wake_main; /* reads main_pipe[0] */
	int main_pipe[2];

	/* The worker's loop and transfers, created here and run only by the worker. */
	struct event_base *wbase;
	struct event *wake_worker; /* reads worker_pipe[0] */
	int worker_pipe[2];
	struct https *https;
	pthread_t thread;
	bool started;

	pthread_mutex_t mu;
	struct fetch_req_list to_worker; /* under mu */
	struct fetch_req_list to_main;   /* under mu */
	bool stop;                       /* under mu: the worker leaves its loop */

	struct fetch_req_list reqs; /* caller's thread */
	unsigned busy;              /* > 0 while results are delivered */
	bool dying;
};

static const char *const fetch_status_names[] = {
	[FETCH_OK] = "ok",
	[FETCH_TOO_LARGE] = "too-large",
	[FETCH_TIMEOUT] = "timeout",
	[FETCH_CONNECT] = "connect",
	[FETCH_TLS] = "tls",
	[FETCH_CERT] = "cert",
	[FETCH_TRUNCATED] = "truncated",
	[FETCH_ERROR] = "error",
};

const char *
fetch_status_str(enum fetch_status st)
{
	if ((size_t)st >= sizeof(fetch_status_names) / sizeof(fetch_status_names[0]))
		return "unknown";
	return fetch_status_names[st];
}

/* One byte wakes the reader; a full pipe already holds a wake-up. */
static void
fetch_wake(int fd)
{
	static const char one = 1;

	while (write(fd, &one, 1) == -1 && errno == EINTR)
		continue;
}

static void
fetch_drain_pipe(int fd)
{
	char buf[256];

	while (read(fd, buf, sizeof(buf)) > 0)
		continue;
}

static void
fetch_pipe(int fds[2])
{
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1)
		fatal("fetch: cannot create a pipe");
}

/* Under f->mu: hands req to the other side, waking it when its queue was empty. */
static void
fetch_post(struct fetch_req_list *queue, struct fetch_req *req, int wake_fd)
{
	bool was_empty = TAILQ_EMPTY(queue);

	TAILQ_INSERT_TAIL(queue, req, q);
	if (was_empty)
		fetch_wake(wake_fd);
}

static char *
fetch_dup(const char *s)
{
	return xstrdup(s != NULL ? s : "");
}

static void
fetch_req_free(struct fetch_req *req)
{
	TAILQ_REMOVE(&req->f->reqs, req, all);
	free(req->host);
	free(req->path);
	for (size_t i = 0; i < req->naddrs; i++)
		free(req->addrs[i]);
	free(req->body);
	free(req->content_type);
	free(req->error);
	free(req->remote_addr);
	free(req->cert_subject);
	free(req->cert_issuer);
	free(req->cert_not_after);
	free(req);
}

/* ---- the worker's side ---- */

/* The transfer ended (worker): keep a copy of the result and hand the request back. */
static void
fetch_on_result(void *arg, const struct fetch_result *res)
{
	struct fetch_req *req = arg;
	struct fetch *f = req->f;

	req->inner = NULL;
	req->res = *res;
	req->body = xmalloc(res->body_len + 1);
	memcpy(req->body, res->body, res->body_len);
	req->body[res->body_len] = '\0';
	req->res.body = req->body;
	req->res.content_type =
	        res->content_type != NULL ? (req->content_type = xstrdup(res->content_type)) : NULL;
	req->res.error = req->error = fetch_dup(res->error);
	req->res.remote_addr = req->remote_addr = fetch_dup(res->remote_addr);
	req->res.cert_subject = req->cert_subject = fetch_dup(res->cert_subject);
	req->res.cert_issuer = req->cert_issuer = fetch_dup(res->cert_issuer);
	req->res.cert_not_after = req->cert_not_after = fetch_dup(res->cert_not_after);
	if (res->cert != NULL) {
		req->cert = *res->cert;
		req->res.cert = &req->cert;
	}
	pthread_mutex_lock(&f->mu);
	/* Cancelled meanwhile: the cancel, still queued for the worker, hands it back. */
	if (req->state == FETCH_RUNNING) {
		req->state = FETCH_DONE;
		fetch_post(&f->to_main, req, f->main_pipe[1]);
	}
	pthread_mutex_unlock(&f->mu);
}

static void
fetch_worker_take(struct fetch *f, struct fetch_req *req, enum fetch_req_state state)
{
	if (state == FETCH_RUNNING) {
		req->inner = https_start(f->https, req->host, req->port, req->path,
		                         (const char *const *)req->addrs, req->naddrs,
		                         fetch_on_result, req);
		return;
	}
	/* A cancel: the transfer stops, with no result, and the request goes back. */
	if (req->inner != NULL) {
		https_cancel(req->inner);
		req->inner = NULL;
	}
	pthread_mutex_lock(&f->mu);
	req->state = FETCH_ACKED;
	fetch_post(&f->to_main, req, f->main_pipe[1]);
	pthread_mutex_unlock(&f->mu);
}

static void
fetch_on_wake_worker(evutil_socket_t fd, short what, void *arg)
{
	struct fetch *f = arg;
	struct fetch_req *req;

	fetch_drain_pipe(f->worker_pipe[0]);
	for (;;) {
		enum fetch_req_state state;

		pthread_mutex_lock(&f->mu);
		if (f->stop) {
			pthread_mutex_unlock(&f->mu);
			event_base_loopbreak(f->wbase);
			return;
		}
		req = TAILQ_FIRST(&f->to_worker);
		if (req != NULL) {
			TAILQ_REMOVE(&f->to_worker, req, q);
			if (req->state == FETCH_QUEUED)
				req->state = FETCH_RUNNING;
			state = req->state;
		}
		pthread_mutex_unlock(&f->mu);
		if (req == NULL)
			return;
		fetch_worker_take(f, req, state);
	}
}

static void *
fetch_worker_main(void *arg)
{
	struct fetch *f = arg;

	event_base_dispatch(f->wbase);
	return NULL;
}

/* ---- the caller's side ---- */

static void
fetch_destroy(struct fetch *f)
{
	struct fetch_req *req;

	if (f->started) {
		pthread_mutex_lock(&f->mu);
		f->stop = true;
		fetch_wake(f->worker_pipe[1]);
		pthread_mutex_unlock(&f->mu);
		pthread_join(f->thread, NULL);
	}
	/* The worker is gone: its transfers end without callbacks, every request is ours. */
	https_free(f->https);
	while ((req = TAILQ_FIRST(&f->reqs)) != NULL)
		fetch_req_free(req);
	event_free(f->wake_worker);
	event_free(f->wake_main);
	event_base_free(f->wbase);
	close(f->worker_pipe[0]);
	close(f->worker_pipe[1]);
	close(f->main_pipe[0]);
	close(f->main_pipe[1]);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

/* Results and cancel acknowledgements from the worker, in the order it sent them. */
static void
fetch_on_wake_main(evutil_socket_t fd, short what, void *arg)
{
	struct fetch *f = arg;
	struct fetch_req *req;

	fetch_drain_pipe(f->main_pipe[0]);
	f->busy++;
	while (!f->dying) {
		pthread_mutex_lock(&f->mu);
		req = TAILQ_FIRST(&f->to_main);
		if (req != NULL)
			TAILQ_REMOVE(&f->to_main, req, q);
		pthread_mutex_unlock(&f->mu);
		if (req == NULL)
			break;
		if (req->state == FETCH_DONE) {
			req->delivering = true;
			req->cb(req->arg, &req->res);
		}
		if (!f->dying)
			fetch_req_free(req);
	}
	if (--f->busy == 0 && f->dying)
		fetch_destroy(f);
}

struct fetch *
fetch_new(struct event_base *base, const struct fetch_opts *opts)
{
	struct fetch *f = xcalloc(1, sizeof(*f));

	f->base = base;
	TAILQ_INIT(&f->to_worker);
	TAILQ_INIT(&f->to_main);
	TAILQ_INIT(&f->reqs);
	if (pthread_mutex_init(&f->mu, NULL) != 0)
		fatalx("fetch: cannot create a mutex");
	fetch_pipe(f->main_pipe);
	fetch_pipe(f->worker_pipe);
	f->wbase = event_base_new();
	if (f->wbase == NULL)
		fatalx("fetch: cannot create the worker's event loop");
	f->wake_main =
	        event_new(base, f->main_pipe[0], EV_READ | EV_PERSIST, fetch_on_wake_main, f);
	f->wake_worker = event_new(f->wbase, f->worker_pipe[0], EV_READ | EV_PERSIST,
	                           fetch_on_wake_worker, f);
	if (f->wake_main == NULL || f->wake_worker == NULL || event_add(f->wake_main, NULL) != 0 ||
	    event_add(f->wake_worker, NULL) != 0)
		fatalx("fetch: cannot allocate events");
	/* Here, not on the worker: a CA file that does not load is reported at start. */
	f->https = https_new(f->wbase, opts);
	return f;
}

void
fetch_free(struct fetch *f)
{
	if (f == NULL)
		return;
	/* Called from a fetch callback: the dispatcher on the stack frees f when it returns. */
	if (f->busy > 0) {
		f->dying = true;
		return;
	}
	fetch_destroy(f);
}

struct fetch_req *
fetch_start(struct fetch *f, const char *host, unsigned port, const char *path,
            const char *const *addrs, size_t naddrs, fetch_cb cb, void *arg)
{
	struct fetch_req *req = xcalloc(1, sizeof(*req));

	req->f = f;
	req->cb = cb;
	req->arg = arg;
	/* One past each cap, so the worker still sees (and rejects) what is too long. */
	req->host = xstrndup(host, HTTPS_HOST_MAX + 1);
	req->port = port;
	req->path = xstrndup(path, HTTPS_PATH_MAX + 1);
	for (; req->naddrs < naddrs && req->naddrs < HTTPS_ADDRS_MAX; req->naddrs++)
		req->addrs[req->naddrs] = xstrndup(addrs[req->naddrs], 64);
	TAILQ_INSERT_TAIL(&f->reqs, req, all);
	/* Started with the first transfer: after the daemon forks and drops privileges. */
	if (!f->started) {
		bgthread_start(&f->thread, "fetch worker", FETCH_WORKER_NICE, fetch_worker_main, f);
		f->started = true;
	}
	pthread_mutex_lock(&f->mu);
	req->state = FETCH_QUEUED;
	fetch_post(&f->to_worker, req, f->worker_pipe[1]);
	pthread_mutex_unlock(&f->mu);
	return req;
}

void
fetch_cancel(struct fetch_req *req)
{
	struct fetch *f;
	bool mine = false;

	if (req == NULL || req->delivering)
		return;
	f = req->f;
	pthread_mutex_lock(&f->mu);
	switch (req->state) {
	case FETCH_QUEUED:
		TAILQ_REMOVE(&f->to_worker, req, q);
		mine = true;
		break;
	case FETCH_DONE:
		TAILQ_REMOVE(&f->to_main, req, q);
		mine = true;
		break;
	case FETCH_RUNNING:
		req->state = FETCH_CANCELLING;
		fetch_post(&f->to_worker, req, f->worker_pipe[1]);
		break;
	case FETCH_CANCELLING:
	case FETCH_ACKED:
		break;
	}
	pthread_mutex_unlock(&f->mu);
	if (mine)
		fetch_req_free(req);
}
