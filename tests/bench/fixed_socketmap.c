/* fixed_socketmap.c: benchmark ceiling: a socketmap server answering every request at once. */
/*
 * One thread, epoll (level-triggered), non-blocking sockets, netstring framing. It answers each
 * complete request in the order received with a fixed reply, so pipelined requests work, and
 * closes a connection on a framing error or a request over 4096 bytes (as mtastsd does). It
 * does no lookup at all, which makes its throughput the most a socketmap server can reach on
 * this machine and kernel: mtastsd's figures are compared against it.
 *
 *   fixed_socketmap (-a HOST:PORT | -u PATH) [-r ok|notfound|alternate] [-t SECONDS]
 *
 * alternate answers OK and NOTFOUND in turn (over all connections), matching a 50/50 mix.
 * It exits on SIGTERM/SIGINT or after -t seconds (default 3600), printing the request count.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define FIXED_CONNS_MAX   65536 /* file descriptors we index directly */
#define FIXED_REQUEST_MAX 4096
#define FIXED_IBUF        (FIXED_REQUEST_MAX + 16)
#define FIXED_OBUF        65536
#define FIXED_EVENTS      512

#define PAYLOAD_OK "OK secure match=example.com servername=hostname"
#define PAYLOAD_NF "NOTFOUND "
/* Netstrings built at start-up from the payloads, so the lengths cannot drift. */
static char reply_ok[sizeof(PAYLOAD_OK) + 8];
static char reply_nf[sizeof(PAYLOAD_NF) + 8];
static size_t reply_ok_len, reply_nf_len;

enum fixed_mode {
	FIXED_OK,
	FIXED_NOTFOUND,
	FIXED_ALTERNATE,
};

struct fconn {
	size_t ilen;
	size_t olen, ooff;
	bool want_out;
	char in[FIXED_IBUF];
	char out[FIXED_OBUF];
};

static struct fconn *conns[FIXED_CONNS_MAX];
static volatile sig_atomic_t stop;
static uint64_t served;
static enum fixed_mode mode = FIXED_OK;
static unsigned flip;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void
conn_close(int ep, int fd)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
	close(fd);
	free(conns[fd]);
	conns[fd] = NULL;
}

/* Writes what is queued; -1 when the peer is gone. */
static int
conn_flush(int ep, int fd, struct fconn *c)
{
	while (c->ooff < c->olen) {
		ssize_t n = write(fd, c->out + c->ooff, c->olen - c->ooff);
		if (n > 0) {
			c->ooff += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!c->want_out) {
				/* Back-pressure: no reading until the client takes its replies. */
				struct epoll_event ev = { .events = EPOLLOUT, .data.fd = fd };
				epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
				c->want_out = true;
			}
			return 0;
		}
		return -1;
	}
	c->olen = c->ooff = 0;
	if (c->want_out) {
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
		epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
		c->want_out = false;
	}
	return 0;
}

/* Answers every complete request in c->in; -1 on a framing error. */
static int
conn_parse(struct fconn *c)
{
	size_t pos = 0;
	while (pos < c->ilen) {
		size_t n = 0, i = pos;
		for (; i < c->ilen && c->in[i] != ':'; i++) {
			if (c->in[i] < '0' || c->in[i] > '9' || i - pos >= 5)
				return -1;
			n = n * 10 + (size_t)(c->in[i] - '0');
		}
		if (i == c->ilen)
			break;
		if (i == pos || n > FIXED_REQUEST_MAX)
			return -1;
		size_t end = i + 1 + n; /* the ',' */
		if (end >= c->ilen)
			break;
		if (c->in[end] != ',')
			return -1;
		const char *r;
		size_t rl;
		if (mode == FIXED_OK || (mode == FIXED_ALTERNATE && (flip++ & 1) == 0)) {
			r = reply_ok;
			rl = reply_ok_len;
		} else {
			r = reply_nf;
			rl = reply_nf_len;
		}
		if (c->olen + rl > sizeof(c->out))
			break; /* the rest waits until the output drains */
		memcpy(c->out + c->olen, r, rl);
		c->olen += rl;
		served++;
		pos = end + 1;
	}
	if (pos > 0) {
		memmove(c->in, c->in + pos, c->ilen - pos);
		c->ilen -= pos;
	}
	return 0;
}

/* Answers what has arrived, as far as the output allows; -1 when the connection must close. */
static int
conn_serve(int ep, int fd, struct fconn *c)
{
	/* Bounded: each turn either consumes requests or stops. */
	for (;;) {
		size_t before = c->ilen;
		if (conn_parse(c) == -1 || conn_flush(ep, fd, c) == -1)
			return -1;
		if (c->want_out || c->ilen == before || c->ilen == 0)
			break;
	}
	/* A full input buffer without one complete request: longer than any request may be. */
	if (!c->want_out && c->ilen == sizeof(c->in))
		return -1;
	return 0;
}

static void
conn_readable(int ep, int fd, struct fconn *c)
{
	if (c->want_out)
		return; /* back-pressure: the client takes its replies first */
	ssize_t n = read(fd, c->in + c->ilen, sizeof(c->in) - c->ilen);
	if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR && errno != EWOULDBLOCK)) {
		conn_close(ep, fd);
		return;
	}
	if (n < 0)
		return;
	c->ilen += (size_t)n;
	if (conn_serve(ep, fd, c) == -1)
		conn_close(ep, fd);
}

static int
listen_on(const char *addr, const char *path)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof(ss));
	if (path != NULL) {
		struct sockaddr_un *un = (struct sockaddr_un *)&ss;
		if (strlen(path) >= sizeof(un->sun_path))
			return -1;
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, path, strlen(path) + 1);
		sl = sizeof(*un);
		unlink(path);
	} else {
		char host[256];
		const char *colon = strrchr(addr, ':');
		if (colon == NULL || (size_t)(colon - addr) >= sizeof(host))
			return -1;
		const char *h = addr;
		size_t hl = (size_t)(colon - addr);
		if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
			h++;
			hl -= 2;
		}
		memcpy(host, h, hl);
		host[hl] = '\0';
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
			                  .ai_flags = AI_NUMERICHOST | AI_PASSIVE };
		struct addrinfo *res;
		if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
			return -1;
		memcpy(&ss, res->ai_addr, res->ai_addrlen);
		sl = res->ai_addrlen;
		freeaddrinfo(res);
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) == -1 || listen(fd, 1024) == -1) {
		close(fd);
		return -1;
	}
	if (path != NULL)
		chmod(path, 0666);
	return fd;
}

static void
usage(void)
{
	fprintf(stderr,
	        "usage: fixed_socketmap (-a HOST:PORT | -u PATH) [-r ok|notfound|alternate] "
	        "[-t SECONDS]\n");
}

int
main(int argc, char **argv)
{
	const char *addr = NULL, *path = NULL;
	long lifetime = 3600;
	int ch;
	while ((ch = getopt(argc, argv, "a:u:r:t:")) != -1) {
		switch (ch) {
		case 'a':
			addr = optarg;
			break;
		case 'u':
			path = optarg;
			break;
		case 'r':
			if (strcmp(optarg, "ok") == 0)
				mode = FIXED_OK;
			else if (strcmp(optarg, "notfound") == 0)
				mode = FIXED_NOTFOUND;
			else if (strcmp(optarg, "alternate") == 0)
				mode = FIXED_ALTERNATE;
			else {
				usage();
				return 2;
			}
			break;
		case 't': {
			char *end;
			errno = 0;
			lifetime = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || lifetime < 1 || lifetime > 86400 * 7) {
				usage();
				return 2;
			}
			break;
		}
		default:
			usage();
			return 2;
		}
	}
	if (optind != argc || (addr == NULL) == (path == NULL)) {
		usage();
		return 2;
	}
	reply_ok_len = (size_t)snprintf(reply_ok, sizeof(reply_ok), "%zu:%s,",
	                                sizeof(PAYLOAD_OK) - 1, PAYLOAD_OK);
	reply_nf_len = (size_t)snprintf(reply_nf, sizeof(reply_nf), "%zu:%s,",
	                                sizeof(PAYLOAD_NF) - 1, PAYLOAD_NF);
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	int lfd = listen_on(addr, path);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (lfd == -1 || ep == -1) {
		fprintf(stderr, "fixed_socketmap: cannot listen on %s: %s\n", addr ? addr : path,
		        strerror(errno));
		return 2;
	}
	struct epoll_event lev = { .events = EPOLLIN, .data.fd = lfd };
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);

	time_t end = time(NULL) + lifetime;
	struct epoll_event evs[FIXED_EVENTS];
	for (unsigned turn = 0; !stop; turn++) {
		int n = epoll_wait(ep, evs, FIXED_EVENTS, 1000);
		if (n == -1 && errno != EINTR)
			break;
		/* The clock is read on idle turns and every 4096th busy one: nothing else is timed.
		 */
		if ((n <= 0 || (turn & 4095) == 0) && time(NULL) >= end)
			break;
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == lfd) {
				for (int k = 0; k < 64; k++) {
					int cfd = accept4(lfd, NULL, NULL,
					                  SOCK_NONBLOCK | SOCK_CLOEXEC);
					if (cfd == -1)
						break;
					if (cfd >= FIXED_CONNS_MAX) {
						close(cfd);
						continue;
					}
					struct fconn *c = malloc(sizeof(*c));
					if (c == NULL) {
						close(cfd);
						continue;
					}
					c->ilen = c->olen = c->ooff = 0;
					c->want_out = false;
					conns[cfd] = c;
					struct epoll_event ev = { .events = EPOLLIN,
						                  .data.fd = cfd };
					epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev);
				}
				continue;
			}
			struct fconn *c = conns[fd];
			if (c == NULL)
				continue;
			if (evs[i].events & EPOLLOUT) {
				/* Flushes, then answers requests parked behind the full output. */
				if (conn_flush(ep, fd, c) == -1 ||
				    (!c->want_out && c->ilen > 0 && conn_serve(ep, fd, c) == -1)) {
					conn_close(ep, fd);
					continue;
				}
			}
			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				conn_readable(ep, fd, c);
		}
	}
	for (int fd = 0; fd < FIXED_CONNS_MAX; fd++)
		if (conns[fd] != NULL)
			conn_close(ep, fd);
	close(lfd);
	close(ep);
	if (path != NULL)
		unlink(path);
	fprintf(stderr, "fixed_socketmap: served %llu requests\n", (unsigned long long)served);
	return 0;
}
