/* load.c: socketmap load generator: K Postfix-like connections, one request outstanding on each. */
/*
 * Each connection sends one netstring request, reads the whole netstring reply, then sends the
 * next (Postfix's dict_sockmap does exactly this). A request's latency runs from just before its
 * write(2) to the moment the last byte of its reply has been read and parsed.
 *
 * Latencies go into a log-linear histogram (128 sub-buckets per power of two, so a reported
 * percentile is the upper edge of a bucket at most 0.8% wide); memory is fixed whatever the run
 * length. Output on stdout: one human line, then one JSON line (-q: the JSON line only).
 *
 * Exit status: 0 run fine and every sanity check held; 1 a sanity check failed; 2 usage or setup
 * error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define LOAD_CONNS_MAX    4096
#define LOAD_KEY_MAX      1024     /* bytes of one key */
#define LOAD_KEYS_MAX     20000000 /* lines of a key file */
#define LOAD_REPLY_MAX    16384    /* reply payload we accept; longer is a framing error */
#define LOAD_RBUF         (LOAD_REPLY_MAX + 16)
#define LOAD_DRAIN_MS     5000 /* after the end, wait this long for outstanding replies */
#define LOAD_CONNECT_MS   2000
#define LOAD_RECONNECTS   1000 /* over the whole run; more means the server is broken */
#define LOAD_DURATION_MAX 86400.0
#define LOAD_EVENTS       256

/* ---- histogram ------------------------------------------------------------------------------ */

#define HIST_SUB     128 /* values below this are exact; above, 64 buckets per octave */
#define HIST_HALF    64
#define HIST_SHIFTS  50
#define HIST_BUCKETS (HIST_SUB + HIST_SHIFTS * HIST_HALF)

struct hist {
	uint64_t count[HIST_BUCKETS];
	uint64_t n;
	uint64_t max;
	uint64_t min;
	double sum;
};

static int
hist_index(uint64_t v)
{
	if (v < HIST_SUB)
		return (int)v;
	int msb = 63 - __builtin_clzll(v);
	int shift = msb - 6; /* keep the top 7 bits: mantissa 64..127 */
	if (shift > HIST_SHIFTS)
		return HIST_BUCKETS - 1;
	uint64_t mant = v >> shift;
	return HIST_SUB + (shift - 1) * HIST_HALF + (int)(mant - HIST_HALF);
}

/* The largest value that lands in bucket i. */
static uint64_t
hist_upper(int i)
{
	if (i < HIST_SUB)
		return (uint64_t)i;
	int shift = (i - HIST_SUB) / HIST_HALF + 1;
	uint64_t mant = (uint64_t)((i - HIST_SUB) % HIST_HALF) + HIST_HALF;
	return ((mant + 1) << shift) - 1;
}

static void
hist_add(struct hist *h, uint64_t v)
{
	h->count[hist_index(v)]++;
	if (h->n == 0 || v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
	h->n++;
	h->sum += (double)v;
}

/* The value at quantile q (0..1), never above the exact maximum. */
static uint64_t
hist_quantile(const struct hist *h, double q)
{
	if (h->n == 0)
		return 0;
	uint64_t rank = (uint64_t)ceil(q * (double)h->n);
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (int i = 0; i < HIST_BUCKETS; i++) {
		seen += h->count[i];
		if (seen >= rank) {
			uint64_t u = hist_upper(i);
			return u < h->max ? u : h->max;
		}
	}
	return h->max;
}

/* ---- keys ------------------------------------------------------------------------------------ */

/* Every request is built once: netstring "<len>:<map> <key>," laid end to end in one arena. */
struct keys {
	char *arena;
	size_t *off; /* n + 1 offsets */
	size_t n;
};

static int
keys_add(struct keys *k, size_t *cap, size_t *acap, size_t *alen, const char *map, const char *key,
         size_t keylen)
{
	size_t payload = strlen(map) + 1 + keylen;
	size_t need = payload + 24;
	if (k->n + 2 > *cap) {
		*cap = *cap ? *cap * 2 : 1024;
		k->off = realloc(k->off, *cap * sizeof(*k->off));
		if (k->off == NULL)
			return -1;
	}
	while (*alen + need > *acap) {
		*acap = *acap ? *acap * 2 : 65536;
		k->arena = realloc(k->arena, *acap);
		if (k->arena == NULL)
			return -1;
	}
	int w = snprintf(k->arena + *alen, *acap - *alen, "%zu:%s ", payload, map);
	if (w < 0 || (size_t)w >= *acap - *alen)
		return -1;
	k->off[k->n] = *alen;
	*alen += (size_t)w;
	memcpy(k->arena + *alen, key, keylen);
	*alen += keylen;
	k->arena[(*alen)++] = ',';
	k->n++;
	k->off[k->n] = *alen;
	return 0;
}

static int
keys_load(struct keys *k, const char *path, const char *single, const char *map)
{
	size_t cap = 0, acap = 0, alen = 0;
	memset(k, 0, sizeof(*k));
	if (path == NULL)
		return keys_add(k, &cap, &acap, &alen, map, single, strlen(single));
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		fprintf(stderr, "load: %s: %s\n", path, strerror(errno));
		return -1;
	}
	char line[LOAD_KEY_MAX + 4];
	size_t lineno = 0;
	int rc = -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		size_t len = strlen(line);
		if (len > 0 && line[len - 1] != '\n' && !feof(f)) {
			fprintf(stderr, "load: %s:%zu: key longer than %d bytes\n", path, lineno,
			        LOAD_KEY_MAX);
			goto fail;
		}
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		if (len == 0 || line[0] == '#')
			continue;
		if (k->n >= LOAD_KEYS_MAX) {
			fprintf(stderr, "load: %s: more than %d keys\n", path, LOAD_KEYS_MAX);
			goto fail;
		}
		if (keys_add(k, &cap, &acap, &alen, map, line, len) == -1) {
			fprintf(stderr, "load: out of memory\n");
			goto fail;
		}
	}
	if (ferror(f)) {
		fprintf(stderr, "load: %s: read error\n", path);
		goto fail;
	}
	if (k->n == 0) {
		fprintf(stderr, "load: %s: no keys\n", path);
		goto fail;
	}
	rc = 0;
fail:
	fclose(f);
	return rc;
}

/* ---- connections ----------------------------------------------------------------------------- */

enum conn_state {
	CONN_IDLE,    /* between requests */
	CONN_WRITING, /* part of the request is still unsent (EPOLLOUT armed) */
	CONN_READING, /* request sent, reply not complete */
	CONN_DONE,    /* no more requests for this connection */
};

struct conn {
	int fd;
	enum conn_state state;
	const char *req;
	size_t reqlen;
	size_t wpos;
	uint64_t t0;
	size_t rlen;
	char rbuf[LOAD_RBUF];
};

enum reply_class {
	REPLY_OK,
	REPLY_NOTFOUND,
	REPLY_TEMP,
	REPLY_PERM,
	REPLY_TIMEOUT,
	REPLY_OTHER,
	REPLY_NCLASSES,
};

static const char *const reply_names[REPLY_NCLASSES] = {
	"ok", "notfound", "temp", "perm", "timeout", "other",
};

enum err_class {
	ERR_CONNECT,
	ERR_EOF,
	ERR_IO,
	ERR_FRAMING,
	ERR_EXTRA,      /* bytes after the reply while no request was outstanding */
	ERR_UNFINISHED, /* no reply within the drain time after the end */
	ERR_NCLASSES,
};

static const char *const err_names[ERR_NCLASSES] = {
	"connect", "eof", "io", "framing", "extra", "unfinished",
};

struct opts {
	unsigned conns;
	double duration;
	double warmup;
	uint64_t requests; /* 0 = bounded by duration */
	const char *addr;
	const char *unix_path;
	const char *map;
	const char *key_file;
	const char *key;
	bool cold;
	const char *label;
	double expect_ok;
	double tolerance;
	uint64_t max_errors;
	bool quiet;
	bool dump_hist;
};

struct run {
	struct opts o;
	struct keys keys;
	struct sockaddr_storage sa;
	socklen_t salen;
	int ep;
	struct conn *conns;
	unsigned active; /* connections not CONN_DONE */
	size_t cursor;   /* next key */
	uint64_t issued;
	bool stopping;
	uint64_t measure_from; /* replies to requests sent before this are not recorded */
	uint64_t last_done;
	uint64_t recorded;
	uint64_t replies[REPLY_NCLASSES];
	uint64_t errors[ERR_NCLASSES];
	unsigned reconnects;
	struct hist all, ok, notfound;
};

static volatile sig_atomic_t interrupted;

static void
on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static uint64_t
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
parse_addr(struct run *r)
{
	memset(&r->sa, 0, sizeof(r->sa));
	if (r->o.unix_path != NULL) {
		struct sockaddr_un *un = (struct sockaddr_un *)&r->sa;
		if (strlen(r->o.unix_path) >= sizeof(un->sun_path)) {
			fprintf(stderr, "load: unix path too long\n");
			return -1;
		}
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, r->o.unix_path, strlen(r->o.unix_path) + 1);
		r->salen = sizeof(*un);
		return 0;
	}
	char host[256];
	const char *colon = strrchr(r->o.addr, ':');
	if (colon == NULL || colon == r->o.addr || (size_t)(colon - r->o.addr) >= sizeof(host)) {
		fprintf(stderr, "load: -a wants HOST:PORT, got %s\n", r->o.addr);
		return -1;
	}
	const char *h = r->o.addr;
	size_t hl = (size_t)(colon - r->o.addr);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST };
	struct addrinfo *res = NULL;
	int e = getaddrinfo(host, colon + 1, &hints, &res);
	if (e != 0) {
		fprintf(stderr, "load: %s: %s\n", r->o.addr, gai_strerror(e));
		return -1;
	}
	memcpy(&r->sa, res->ai_addr, res->ai_addrlen);
	r->salen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* A non-blocking connected socket, or -1 after LOAD_CONNECT_MS. */
static int
connect_one(struct run *r)
{
	int fd = socket(r->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	if (connect(fd, (struct sockaddr *)&r->sa, r->salen) == -1) {
		if (errno != EINPROGRESS)
			goto fail;
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		if (poll(&p, 1, LOAD_CONNECT_MS) != 1)
			goto fail;
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == -1 || soerr != 0)
			goto fail;
	}
	if (r->sa.ss_family != AF_UNIX) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	return fd;
fail:
	close(fd);
	return -1;
}

static void
conn_done(struct run *r, struct conn *c)
{
	if (c->fd != -1) {
		epoll_ctl(r->ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		c->fd = -1;
	}
	if (c->state != CONN_DONE) {
		c->state = CONN_DONE;
		r->active--;
	}
}

static int
conn_open(struct run *r, struct conn *c)
{
	c->fd = connect_one(r);
	if (c->fd == -1) {
		r->errors[ERR_CONNECT]++;
		return -1;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
	if (epoll_ctl(r->ep, EPOLL_CTL_ADD, c->fd, &ev) == -1) {
		close(c->fd);
		c->fd = -1;
		r->errors[ERR_CONNECT]++;
		return -1;
	}
	c->rlen = 0;
	return 0;
}

static void conn_issue(struct run *r, struct conn *c);

/* The request failed on the wire: count it, then go on with a new connection (as Postfix does). */
static void
conn_fail(struct run *r, struct conn *c, enum err_class e)
{
	r->errors[e]++;
	epoll_ctl(r->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	if (r->stopping || r->reconnects >= LOAD_RECONNECTS || conn_open(r, c) == -1) {
		conn_done(r, c);
		return;
	}
	r->reconnects++;
	c->state = CONN_IDLE;
	conn_issue(r, c);
}

static void
conn_write(struct run *r, struct conn *c)
{
	while (c->wpos < c->reqlen) {
		ssize_t n = write(c->fd, c->req + c->wpos, c->reqlen - c->wpos);
		if (n > 0) {
			c->wpos += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (c->state != CONN_WRITING) {
				struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT,
					                  .data.ptr = c };
				epoll_ctl(r->ep, EPOLL_CTL_MOD, c->fd, &ev);
				c->state = CONN_WRITING;
			}
			return;
		}
		conn_fail(r, c, ERR_IO);
		return;
	}
	if (c->state == CONN_WRITING) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
		epoll_ctl(r->ep, EPOLL_CTL_MOD, c->fd, &ev);
	}
	c->state = CONN_READING;
}

static void
conn_issue(struct run *r, struct conn *c)
{
	if (!r->stopping && r->o.requests != 0 && r->issued >= r->o.requests)
		r->stopping = true;
	if (r->stopping || (r->o.cold && r->cursor >= r->keys.n)) {
		conn_done(r, c);
		return;
	}
	size_t i = r->cursor++;
	if (i >= r->keys.n) {
		i %= r->keys.n;
		if (r->cursor >= 2 * r->keys.n)
			r->cursor -= r->keys.n;
	}
	c->req = r->keys.arena + r->keys.off[i];
	c->reqlen = r->keys.off[i + 1] - r->keys.off[i];
	c->wpos = 0;
	r->issued++;
	c->t0 = now_ns();
	conn_write(r, c);
}

static enum reply_class
classify(const char *p, size_t len)
{
	static const struct {
		const char *prefix;
		size_t len;
		enum reply_class cls;
	} table[] = {
		{ "OK ", 3, REPLY_OK },           { "NOTFOUND ", 9, REPLY_NOTFOUND },
		{ "TEMP ", 5, REPLY_TEMP },       { "PERM ", 5, REPLY_PERM },
		{ "TIMEOUT ", 8, REPLY_TIMEOUT },
	};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (len >= table[i].len && memcmp(p, table[i].prefix, table[i].len) == 0)
			return table[i].cls;
	return REPLY_OTHER;
}

/* 1: a whole reply sits in rbuf (*payload, *plen, *total set); 0: need more; -1: bad framing. */
static int
netstring_parse(const char *buf, size_t len, const char **payload, size_t *plen, size_t *total)
{
	size_t n = 0, i = 0;
	for (; i < len && buf[i] != ':'; i++) {
		if (buf[i] < '0' || buf[i] > '9' || i >= 6)
			return -1;
		n = n * 10 + (size_t)(buf[i] - '0');
	}
	if (i == len)
		return 0;
	if (i == 0 || n > LOAD_REPLY_MAX)
		return -1;
	if (len < i + 1 + n + 1)
		return 0;
	if (buf[i + 1 + n] != ',')
		return -1;
	*payload = buf + i + 1;
	*plen = n;
	*total = i + 1 + n + 1;
	return 1;
}

static void
conn_read(struct run *r, struct conn *c)
{
	for (;;) {
		ssize_t n = read(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen);
		if (n == 0) {
			conn_fail(r, c, ERR_EOF);
			return;
		}
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			conn_fail(r, c, ERR_IO);
			return;
		}
		c->rlen += (size_t)n;
		if (c->state != CONN_READING) {
			conn_fail(r, c, ERR_EXTRA);
			return;
		}
		const char *payload;
		size_t plen, total;
		int p = netstring_parse(c->rbuf, c->rlen, &payload, &plen, &total);
		if (p == 0) {
			if (c->rlen == sizeof(c->rbuf)) {
				conn_fail(r, c, ERR_FRAMING);
				return;
			}
			continue;
		}
		if (p == -1) {
			conn_fail(r, c, ERR_FRAMING);
			return;
		}
		uint64_t t1 = now_ns();
		if (total != c->rlen) {
			conn_fail(r, c, ERR_EXTRA);
			return;
		}
		c->rlen = 0;
		enum reply_class cls = classify(payload, plen);
		if (c->t0 >= r->measure_from) {
			uint64_t lat = t1 - c->t0;
			r->replies[cls]++;
			r->recorded++;
			hist_add(&r->all, lat);
			if (cls == REPLY_OK)
				hist_add(&r->ok, lat);
			else if (cls == REPLY_NOTFOUND)
				hist_add(&r->notfound, lat);
			r->last_done = t1;
		}
		c->state = CONN_IDLE;
		conn_issue(r, c);
		return;
	}
}

/* ---- reporting ------------------------------------------------------------------------------- */

static double
us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

static void
json_hist(FILE *out, const char *name, const struct hist *h)
{
	fprintf(out,
	        "\"%s\":{\"n\":%" PRIu64 ",\"mean\":%.1f,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
	        "\"p999\":%.1f,\"max\":%.1f}",
	        name, h->n, h->n ? us((uint64_t)(h->sum / (double)h->n)) : 0.0,
	        us(hist_quantile(h, 0.50)), us(hist_quantile(h, 0.90)), us(hist_quantile(h, 0.99)),
	        us(hist_quantile(h, 0.999)), us(h->max));
}

static uint64_t
error_total(const struct run *r)
{
	uint64_t e = 0;
	for (int i = 0; i < ERR_NCLASSES; i++)
		e += r->errors[i];
	return e;
}

static int
report(struct run *r, double elapsed)
{
	const struct opts *o = &r->o;
	double rps = elapsed > 0 ? (double)r->recorded / elapsed : 0.0;
	uint64_t bad = error_total(r) + r->replies[REPLY_TEMP] + r->replies[REPLY_PERM] +
	               r->replies[REPLY_TIMEOUT] + r->replies[REPLY_OTHER];
	double ok_ratio = r->recorded ? (double)r->replies[REPLY_OK] / (double)r->recorded : 0.0;
	bool sane = bad <= o->max_errors && r->recorded > 0;
	if (o->expect_ok >= 0 && fabs(ok_ratio - o->expect_ok) > o->tolerance)
		sane = false;

	if (!o->quiet) {
		printf("%s%sK=%u %.0f req/s  lat us p50 %.1f p99 %.1f p99.9 %.1f max %.1f  "
		       "n=%" PRIu64 " ok=%" PRIu64 " notfound=%" PRIu64 " temp=%" PRIu64
		       " perm=%" PRIu64 " errors=%" PRIu64 "%s\n",
		       o->label ? o->label : "", o->label ? ": " : "", o->conns, rps,
		       us(hist_quantile(&r->all, 0.50)), us(hist_quantile(&r->all, 0.99)),
		       us(hist_quantile(&r->all, 0.999)), us(r->all.max), r->recorded,
		       r->replies[REPLY_OK], r->replies[REPLY_NOTFOUND], r->replies[REPLY_TEMP],
		       r->replies[REPLY_PERM],
		       error_total(r) + r->replies[REPLY_TIMEOUT] + r->replies[REPLY_OTHER],
		       sane ? "" : "  SANITY CHECK FAILED");
	}
	printf("{\"tool\":\"load\",\"label\":\"%s\",\"conns\":%u,\"cold\":%s,\"keys\":%zu,"
	       "\"requests\":%" PRIu64 ",\"elapsed_s\":%.6f,\"rps\":%.1f,\"ok_ratio\":%.4f,",
	       o->label ? o->label : "", o->conns, o->cold ? "true" : "false", r->keys.n,
	       r->recorded, elapsed, rps, ok_ratio);
	printf("\"replies\":{");
	for (int i = 0; i < REPLY_NCLASSES; i++)
		printf("%s\"%s\":%" PRIu64, i ? "," : "", reply_names[i], r->replies[i]);
	printf("},\"errors\":{");
	for (int i = 0; i < ERR_NCLASSES; i++)
		printf("%s\"%s\":%" PRIu64, i ? "," : "", err_names[i], r->errors[i]);
	printf("},\"reconnects\":%u,\"lat_us\":{", r->reconnects);
	json_hist(stdout, "all", &r->all);
	putchar(',');
	json_hist(stdout, "ok", &r->ok);
	putchar(',');
	json_hist(stdout, "notfound", &r->notfound);
	printf("}");
	if (o->dump_hist) {
		/* Non-empty buckets of the "all" histogram as [upper edge ns, count], so that runs
		 * can be merged exactly. */
		printf(",\"hist_ns\":[");
		bool first = true;
		for (int i = 0; i < HIST_BUCKETS; i++) {
			if (r->all.count[i] == 0)
				continue;
			printf("%s[%" PRIu64 ",%" PRIu64 "]", first ? "" : ",", hist_upper(i),
			       r->all.count[i]);
			first = false;
		}
		printf("],\"max_ns\":%" PRIu64 ",\"sum_ns\":%.0f", r->all.max, r->all.sum);
	}
	printf(",\"sane\":%s}\n", sane ? "true" : "false");
	fflush(stdout);
	return sane ? 0 : 1;
}

/* ---- main ------------------------------------------------------------------------------------ */

static void
usage(FILE *out)
{
	fprintf(out,
	        "usage: load [-c K] [-d SECONDS | -n REQUESTS] [-w WARMUP] (-a HOST:PORT | -u "
	        "PATH)\n"
	        "            [-m MAP] (-k FILE | -K KEY) [--cold] [--label TEXT]\n"
	        "            [--expect-ok-ratio R] [--tolerance T] [--max-errors N] [--dump-hist] "
	        "[-q]\n"
	        "  -c K        concurrent connections, one request outstanding on each (default "
	        "1)\n"
	        "  -d SECONDS  run this long (default 10); -n REQUESTS: stop after this many\n"
	        "  -w SECONDS  warm-up before recording (with -d; default 0)\n"
	        "  -a / -u     socketmap server: TCP HOST:PORT, or a unix socket path\n"
	        "  -m MAP      map name sent before each key (default postfix)\n"
	        "  -k FILE     keys, one per line (# comments), used in order and cycled\n"
	        "  -K KEY      one key, repeated\n"
	        "  --cold      use every key once, then stop (a connection closes when none is "
	        "left)\n"
	        "  --expect-ok-ratio R  fail unless OK/replies is R +- --tolerance (default 0.02)\n"
	        "  --max-errors N       fail when errors+TEMP+PERM+TIMEOUT+other exceed N (default "
	        "0)\n"
	        "  --label TEXT         name echoed in both output lines\n"
	        "  -q          JSON line only\n");
}

static int
parse_double(const char *s, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi))
		return -1;
	*out = v;
	return 0;
}

static int
parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;
	errno = 0;
	if (*s == '-')
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int
parse_opts(int argc, char **argv, struct opts *o)
{
	enum { OPT_COLD = 256, OPT_EXPECT, OPT_TOL, OPT_MAXERR, OPT_LABEL, OPT_HIST };
	static const struct option longs[] = {
		{ "cold", no_argument, NULL, OPT_COLD },
		{ "expect-ok-ratio", required_argument, NULL, OPT_EXPECT },
		{ "tolerance", required_argument, NULL, OPT_TOL },
		{ "max-errors", required_argument, NULL, OPT_MAXERR },
		{ "label", required_argument, NULL, OPT_LABEL },
		{ "dump-hist", no_argument, NULL, OPT_HIST },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	*o = (struct opts){
		.conns = 1, .duration = 10.0, .map = "postfix", .expect_ok = -1.0, .tolerance = 0.02
	};
	bool have_d = false;
	int ch;
	uint64_t u;
	while ((ch = getopt_long(argc, argv, "c:d:n:w:a:u:m:k:K:qh", longs, NULL)) != -1) {
		switch (ch) {
		case 'c':
			if (parse_u64(optarg, 1, LOAD_CONNS_MAX, &u) == -1)
				goto bad;
			o->conns = (unsigned)u;
			break;
		case 'd':
			if (parse_double(optarg, 0.001, LOAD_DURATION_MAX, &o->duration) == -1)
				goto bad;
			have_d = true;
			break;
		case 'n':
			if (parse_u64(optarg, 1, UINT64_MAX / 2, &o->requests) == -1)
				goto bad;
			break;
		case 'w':
			if (parse_double(optarg, 0.0, LOAD_DURATION_MAX, &o->warmup) == -1)
				goto bad;
			break;
		case 'a':
			o->addr = optarg;
			break;
		case 'u':
			o->unix_path = optarg;
			break;
		case 'm':
			o->map = optarg;
			break;
		case 'k':
			o->key_file = optarg;
			break;
		case 'K':
			o->key = optarg;
			break;
		case 'q':
			o->quiet = true;
			break;
		case OPT_COLD:
			o->cold = true;
			break;
		case OPT_EXPECT:
			if (parse_double(optarg, 0.0, 1.0, &o->expect_ok) == -1)
				goto bad;
			break;
		case OPT_TOL:
			if (parse_double(optarg, 0.0, 1.0, &o->tolerance) == -1)
				goto bad;
			break;
		case OPT_MAXERR:
			if (parse_u64(optarg, 0, UINT64_MAX, &o->max_errors) == -1)
				goto bad;
			break;
		case OPT_LABEL:
			o->label = optarg;
			break;
		case OPT_HIST:
			o->dump_hist = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind != argc || (o->addr == NULL) == (o->unix_path == NULL) ||
	    (o->key_file == NULL) == (o->key == NULL) || strchr(o->map, ' ') != NULL) {
		usage(stderr);
		return -1;
	}
	if (o->requests != 0 && !have_d)
		o->duration = LOAD_DURATION_MAX;
	if (o->requests != 0 && o->warmup > 0) {
		fprintf(stderr, "load: -w works with -d only\n");
		return -1;
	}
	if (o->key != NULL && strlen(o->key) > LOAD_KEY_MAX) {
		fprintf(stderr, "load: key longer than %d bytes\n", LOAD_KEY_MAX);
		return -1;
	}
	return 0;
bad:
	fprintf(stderr, "load: bad value for -%c: %s\n", ch < 256 ? ch : '-', optarg);
	return -1;
}

int
main(int argc, char **argv)
{
	static struct run r; /* large: three histograms */
	if (parse_opts(argc, argv, &r.o) == -1)
		return 2;
	if (keys_load(&r.keys, r.o.key_file, r.o.key, r.o.map) == -1 || parse_addr(&r) == -1)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	r.ep = epoll_create1(EPOLL_CLOEXEC);
	r.conns = calloc(r.o.conns, sizeof(*r.conns));
	if (r.ep == -1 || r.conns == NULL) {
		fprintf(stderr, "load: setup: %s\n", strerror(errno));
		return 2;
	}
	for (unsigned i = 0; i < r.o.conns; i++) {
		struct conn *c = &r.conns[i];
		if (conn_open(&r, c) == -1) {
			fprintf(stderr, "load: cannot connect to %s\n",
			        r.o.addr ? r.o.addr : r.o.unix_path);
			return 2;
		}
		c->state = CONN_IDLE;
		r.active++;
	}

	uint64_t start = now_ns();
	uint64_t warm = (uint64_t)(r.o.warmup * 1e9);
	uint64_t deadline = start + warm + (uint64_t)(r.o.duration * 1e9);
	uint64_t drain_deadline = 0;
	r.measure_from = start + warm;
	r.last_done = r.measure_from;
	for (unsigned i = 0; i < r.o.conns; i++)
		conn_issue(&r, &r.conns[i]);

	struct epoll_event evs[LOAD_EVENTS];
	while (r.active > 0) {
		uint64_t t = now_ns();
		if (!r.stopping && (t >= deadline || interrupted))
			r.stopping = true;
		if (r.stopping && drain_deadline == 0)
			drain_deadline = t + (uint64_t)LOAD_DRAIN_MS * 1000000u;
		if (drain_deadline != 0 && t >= drain_deadline)
			break;
		/* Idle connections after the stop have nothing to wait for. */
		if (r.stopping)
			for (unsigned i = 0; i < r.o.conns; i++)
				if (r.conns[i].state == CONN_IDLE)
					conn_done(&r, &r.conns[i]);
		uint64_t until = r.stopping ? drain_deadline : deadline;
		int timeout = until > t ? (int)((until - t) / 1000000u) + 1 : 0;
		if (timeout > 100)
			timeout = 100;
		int n = epoll_wait(r.ep, evs, LOAD_EVENTS, timeout);
		if (n == -1 && errno != EINTR) {
			fprintf(stderr, "load: epoll_wait: %s\n", strerror(errno));
			return 2;
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c->fd == -1)
				continue;
			if ((evs[i].events & EPOLLOUT) && c->state == CONN_WRITING)
				conn_write(&r, c);
			if (c->fd != -1 && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
				conn_read(&r, c);
		}
	}
	for (unsigned i = 0; i < r.o.conns; i++) {
		struct conn *c = &r.conns[i];
		if (c->state == CONN_READING || c->state == CONN_WRITING)
			r.errors[ERR_UNFINISHED]++;
		conn_done(&r, c);
	}
	/* Cold runs end when the keys do, so they are timed to the last reply; timed runs to it
	 * too, which adds at most one reply's wait to the window. */
	double elapsed = (double)(r.last_done - r.measure_from) / 1e9;
	int rc = report(&r, elapsed);
	close(r.ep);
	free(r.conns);
	free(r.keys.arena);
	free(r.keys.off);
	return rc;
}
