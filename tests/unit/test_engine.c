/* test_engine.c: the policy lifecycle (CACHE-*, FETCH-5..8, TXT-6..10) with scripted DNS/HTTPS. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>

#include "engine/engine.h"
#include "store/store.h"
#include "fake_io.h"

#define ENFORCE  "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 86400\n"
#define ENFORCE2 "version: STSv1\nmode: enforce\nmx: mx2.example.com\nmax_age: 86400\n"
#define TESTING  "version: STSv1\nmode: testing\nmx: mx1.example.com\nmax_age: 86400\n"
#define NONE_P   "version: STSv1\nmode: none\nmax_age: 86400\n"
#define ZERO_AGE "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 0\n"

static struct event_base *base;
static struct engine *eng;
static struct dns *dns;
static struct fetch *fetch;
static uint32_t now_s;

struct outcome {
	int calls;
	enum engine_result result;
	int mode; /* -1 without policy */
	char mx[64];
	enum answer_failure failure;
};

static uint32_t
test_clock(void *arg)
{
	return now_s;
}

static void
record(struct outcome *o, const struct engine_answer *a)
{
	o->calls++;
	o->result = a->result;
	o->mode = a->policy != NULL ? (int)a->policy->mode : -1;
	o->mx[0] = '\0';
	if (a->policy != NULL)
		snprintf(o->mx, sizeof(o->mx), "%s", policy_mx_next(a->policy, NULL));
	o->failure = a->failure;
}

static void
on_answer(void *arg, const struct engine_answer *a)
{
	record(arg, a);
}

/* The options every test starts from; each setup changes what it needs. */
static struct engine_opts
base_opts(void)
{
	struct engine_opts o = {
		.recheck_interval = 300,
		.fail_ttl = 30,
		.backoff = 300,
		.lookup_timeout_ms = 100,
		.max_entries = 1000,
		.clock = test_clock,
	};

	return o;
}

static void
start_engine(const struct engine_opts *o)
{
	fake_io_reset();
	now_s = 1700000000;
	base = event_base_new();
	dns = dns_new(base, NULL, NULL);
	fetch = fetch_new(base, NULL);
	eng = engine_new(base, dns, fetch, o);
}

static int
setup(void **state)
{
	struct engine_opts o = base_opts();

	start_engine(&o);
	return 0;
}

static int
setup_temp(void **state)
{
	struct engine_opts o = base_opts();

	o.dns_failure_temp = true;
	start_engine(&o);
	return 0;
}

static int
teardown(void **state)
{
	engine_free(eng);
	dns_free(dns);
	fetch_free(fetch);
	event_base_free(base);
	return 0;
}

/* Returns true when answered at once; o is filled either way once answered. */
static bool
lookup(const char *domain, struct outcome *o)
{
	struct engine_answer a;
	struct engine_wait *w;

	memset(o, 0, sizeof(*o));
	w = engine_lookup(eng, domain, &a, on_answer, o);
	if (w == NULL) {
		record(o, &a);
		return true;
	}
	return false;
}

static void
answer_txt(const char *rec, uint32_t ttl)
{
	const char *recs[1] = { rec };

	fake_dns_txt(fake_dns_last(), DNS_OK, ttl, recs, 1);
}

/* A full discovery: TXT with id, the policy host's address, then the fetch. */
static void
discover(const char *domain, const char *id, const char *body, struct outcome *o)
{
	char rec[64];

	assert_false(lookup(domain, o));
	snprintf(rec, sizeof(rec), "v=STSv1; id=%s;", id);
	answer_txt(rec, 300);
	assert_int_equal(fake_dns_calls[fake_dns_last()].type, DNS_TYPE_ADDR);
	fake_dns_addr(fake_dns_last(), DNS_OK, "192.0.2.10");
	fake_fetch_answer(fake_fetch_last(), FETCH_OK, 200, "text/plain; charset=utf-8", body);
	assert_int_equal(o->calls, 1);
}

static void
test_no_txt_negative_cached(void **state)
{
	struct outcome o;

	/* TXT-10: NXDOMAIN means no policy; the verdict is reused for its TTL. */
	assert_false(lookup("example.com", &o));
	assert_string_equal(fake_dns_calls[0].name, "_mta-sts.example.com");
	fake_dns_txt(0, DNS_NXDOMAIN, 120, NULL, 0);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.result, ENGINE_NONE);
	now_s += 119;
	assert_true(lookup("example.com", &o));
	assert_int_equal(o.result, ENGINE_NONE);
	assert_int_equal(fake_dns_ncalls, 1);
	now_s += 1;
	assert_false(lookup("example.com", &o));
	assert_int_equal(fake_dns_ncalls, 2);
}

static void
test_enforce_fetched_and_cached(void **state)
{
	struct outcome o;

	discover("example.com", "a1", ENFORCE, &o);
	assert_int_equal(o.result, ENGINE_POLICY);
	assert_int_equal(o.mode, POLICY_MODE_ENFORCE);
	assert_string_equal(fake_dns_calls[1].name, "mta-sts.example.com");
	assert_string_equal(fake_fetch_calls[0].host, "mta-sts.example.com");
	assert_string_equal(fake_fetch_calls[0].addr, "192.0.2.10");
	/* CACHE-8: within the recheck interval, no DNS at all. */
	assert_true(lookup("example.com", &o));
	assert_int_equal(o.result, ENGINE_POLICY);
	assert_int_equal(fake_dns_ncalls, 2);
}

static void
test_unchanged_id_no_refetch(void **state)
{
	struct outcome o;

	discover("example.com", "a1", ENFORCE, &o);
	now_s += 301;
	/* CACHE-3: the TXT id is unchanged, so no HTTPS fetch. */
	assert_false(lookup("example.com", &o));
	answer_txt("v=STSv1; id=a1;", 300);
	assert_int_equal(o.result, ENGINE_POLICY);
	assert_int_equal(fake_fetch_ncalls, 1);
}

static void
test_changed_id_refetches(void **state)
{
	struct outcome o;

	discover("example.com", "a1", ENFORCE, &o);
	now_s += 301;
	/* CACHE-3: a new id means a new policy; TXT-3: even a case change counts. */
	discover("example.com", "A1", ENFORCE2, &o);
	assert_int_equal(fake_fetch_ncalls, 2);
	assert_string_equal(o.mx, "mx2.example.com");
}

static void
test_txt_removed_keeps_policy(void **state)
{
	struct outcome o;

	discover("example.com", "a1", ENFORCE, &o);
	now_s += 301;
	/* TXT-7: losing the TXT record does not drop a valid cached policy. */
	assert_false(lookup("example.com", &o));
	fake_dns_txt(fake_dns_last(), DNS_NXDOMAIN, 60, NULL, 0);
	assert_int_equal(o.result, ENGINE_POLICY);
	assert_int_equal(o.mode, POLICY_MODE_ENFORCE);
}

static void
test_txt_invalid_or_multiple_keeps_policy(void **state)
{
	struct outcome o;
	const char *two[2] = { "v=STSv1; id=a1;", "v=STSv1; id=b2;" };

	discover("example.com", "a1", ENFORCE, &o);
	now_s += 301;
	/* TXT-6 + CACHE-4: two candidates mean no live policy; the cache stays in force. */
	assert_false(lookup("example.com", &o));
	fake_dns_txt(fake_dns_last(), DNS_OK, 60, two, 2);
	assert_int_equal(o.result, ENGINE_POLICY);
	assert_int_equal(fake_fetch_ncalls, 1);
	/* TXT-6 without a cache: no policy. */
	assert_false(lookup("other.example", &o));
	fake_dns_txt(fake_dns_last(), DNS_OK, 60, two, 2);
	assert_int_equal(o.result, ENGINE_NONE);
	assert_false(lookup("bad.example", &o));
	answer_txt("v=STSv1; id=has-dash;", 60);
	assert_int_equal(o.result, ENGINE_NONE);
	assert_int_equal(fake_fetch_ncalls, 1);
}

static void
test_dns_failure(void **state)
{
	struct outcome o;

	discover("example.com", "a1", ENFORCE, &o);
	now_s += 301;
	/* CACHE-4: SERVFAIL with a valid cache applies the cache. */
	assert_false(lookup("example.com", &o));
	fake_dns_txt(fake_dns_last(), DNS_SERVFAIL, 0, NULL, 0);
	assert_int_equal(o.result, ENGINE_POLICY);
	/* TXT-10: without a cache, NOTFOUND by default. */
	assert_false(lookup("fail.example", &o));
	fake_dns_txt(fake_dns_last(), DNS_TIMEOUT, 0, NULL, 0);
	assert_int_equal(o.result, ENGINE_NONE);
	/* The failure verdict is reused for fail_ttl, so every message does not wait. */
	assert_true(lookup("fail.example", &o));
	now_s += 30;
	assert_false(lookup("fail.example", &o));
}

static void
test_dns_failure_temp_knob(void **state)
{
	struct outcome o;

	/* TXT-10 knob: TEMP instead of NOTFOUND when nothing is cached. */
	assert_false(lookup("fail.example", &o));
	fake_dns_txt(fake_dns_last(), DNS_SERVFAIL, 0, NULL, 0);
	assert_int_equal(o.result, ENGINE_TEMP);
}

static void
test_fetch_failure_keeps_cache_and_backs_off(void **state)
{
	struct outcome o;

	discover("example.com", "a1", ENFORCE, &o);
	now_s += 301;
	/* FETCH-8: the id changed but the fetch fails: keep applying the cached policy. */
	assert_false(lookup("example.com", &o));
	answer_txt("v=STSv1; id=b2;", 60);
	fake_dns_addr(fake_dns_last(), DNS_OK, "192.0.2.10");
	fake_fetch_answer(fake_fetch_last(), FETCH_OK, 500, "text/plain", "oops");
	assert_int_equal(o.result, ENGINE_POLICY);
	assert_string_equal(o.mx, "mx1.example.com");
	assert_int_equal(fake_fetch_ncalls, 2);
	/* FETCH-5: same id within 5 minutes: no new fetch. */
	now_s += 61;
	assert_false(lookup("example.com", &o));
	answer_txt("v=STSv1; id=b2;", 60);
	assert_int_equal(o.result, ENGINE_POLICY);
	assert_int_equal(fake_fetch_ncalls, 2);
	/* FETCH-5: a new id lifts the back-off at once. */
	now_s += 61;
	discover("example.com", "c3", ENFORCE2, &o);
	assert_int_equal(fake_fetch_ncalls, 3);
	assert_string_equal(o.mx, "mx2.example.com");
}

static void
test_fetch_failure_no_cache(void **state)
{
	struct outcome o;

	/* FETCH-7: a TXT record but no fetchable policy and no cache: no policy. */
	assert_false(lookup("example.com", &o));
	answer_txt("v=STSv1; id=a1;", 60);
	fake_dns_addr(fake_dns_last(), DNS_OK, "192.0.2.10");
	fake_fetch_answer(fake_fetch_last(), FETCH_CERT, 0, NULL, NULL);
	assert_int_equal(o.result, ENGINE_NONE);
	assert_int_equal(o.failure, ANSWER_FAILURE_WEBPKI);
	/* POL-2: wrong media type is a fetch failure. */
	now_s += 1000;
	assert_false(lookup("example.com", &o));
	answer_txt("v=STSv1; id=a2;", 60);
	fake_dns_addr(fake_dns_last(), DNS_OK, "192.0.2.10");
	fake_fetch_answer(fake_fetch_last(), FETCH_OK, 200, "text/html", ENFORCE);
	assert_int_equal(o.result, ENGINE_NONE);
	assert_int_equal(o.failure, ANSWER_FAILURE_FETCH);
	/* POL-6: an invalid policy is sts-policy-invalid. */
	now_s += 1000;
	assert_false(lookup("example.com", &o));
	answer_txt("v=STSv1; id=a3;", 60);
	fake_dns_addr(fake_dns_last(), DNS_OK, "192.0.2.10");
	fake_fetch_answer(fake_fetch_last(), FETCH_OK, 200, "text/plain", "garbage\n");
	assert_int_equal(o.result, ENGINE_NONE);
	assert_int_equal(o.failure, ANSWER_FAILURE_INVALID);
	/* The policy host not resolving is a fetch failure too. */
	now_s += 1000;
	assert_false(lookup("example.com", &o));
	answer_txt("v=STSv1; id=a4;", 60);
	fake_dns_addr(fake_dns_last(), DNS_NXDOMAIN, NULL);
	assert_int_equal(o.result, ENGINE_NONE);
	assert_int_equal(fake_fetch_ncalls, 3);
}

static void
test_expiry_not_extended_by_same_id(void **state)
{
	struct outcome o;

	discover("example.com", "a1", ENFORCE, &o);
	/* CACHE-5: expired, same id: fetch again; if that fails, the policy is gone. */
	now_s += 86400;
	assert_false(lookup("example.com", &o));
	answer_txt("v=STSv1; id=a1;", 300);
	assert_int_equal(fake_dns_calls[fake_dns_last()].type, DNS_TYPE_ADDR);
	fake_dns_addr(fake_dns_last(), DNS_OK, "192.0.2.10");
	fake_fetch_answer(fake_fetch_last(), FETCH_TIMEOUT, 0, NULL, NULL);
	assert_int_equal(o.result, ENGINE_NONE);
	assert_int_equal(fake_fetch_ncalls, 2);
	/* And while backing off that id, still nothing (no silent renewal). */
	assert_true(lookup("example.com", &o));
	assert_int_equal(o.result, ENGINE_NONE);
}

static void
test_expiry_renewed_by_fetch(void **state)
{
	struct outcome o;

	discover("example.com", "a1", ENFORCE, &o);
	now_s += 86400;
	discover("example.com", "a1", ENFORCE2, &o);
	assert_int_equal(o.result, ENGINE_POLICY);
	assert_string_equal(o.mx, "mx2.example.com");
}

static void
test_max_age_zero(void **state)
{
	struct outcome o;

	/* CACHE-8: a fresh policy answers the lookup that fetched it, even with max_age 0. */
	discover("example.com", "a1", ZERO_AGE, &o);
	assert_int_equal(o.result, ENGINE_POLICY);
	/* POL-7: but it is never served from the cache afterwards. */
	assert_false(lookup("example.com", &o));
	assert_int_equal(fake_dns_calls[fake_dns_last()].type, DNS_TYPE_TXT);
}

static void
test_none_replaces_enforce(void **state)
{
	struct outcome o;

	discover("example.com", "a1", ENFORCE, &o);
	now_s += 301;
	/* CACHE-6, CACHE-7: a fetched mode none replaces enforce (opt-out). */
	discover("example.com", "a2", NONE_P, &o);
	assert_int_equal(o.result, ENGINE_POLICY);
	assert_int_equal(o.mode, POLICY_MODE_NONE);
	assert_true(lookup("example.com", &o));
	assert_int_equal(o.mode, POLICY_MODE_NONE);
	discover("testing.example", "t1", TESTING, &o);
	assert_int_equal(o.mode, POLICY_MODE_TESTING);
}

static void
test_coalescing(void **state)
{
	static struct outcome o[200];

	/* 200 concurrent lookups share one discovery: one TXT query, one fetch. */
	for (int i = 0; i < 200; i++)
		assert_false(lookup("example.com", &o[i]));
	assert_int_equal(fake_dns_ncalls, 1);
	answer_txt("v=STSv1; id=a1;", 300);
	fake_dns_addr(fake_dns_last(), DNS_OK, "192.0.2.10");
	fake_fetch_answer(fake_fetch_last(), FETCH_OK, 200, "text/plain", ENFORCE);
	assert_int_equal(fake_dns_ncalls, 2);
	assert_int_equal(fake_fetch_ncalls, 1);
	for (int i = 0; i < 200; i++) {
		assert_int_equal(o[i].calls, 1);
		assert_int_equal(o[i].result, ENGINE_POLICY);
	}
}

static void
test_cancel(void **state)
{
	struct outcome a, b;
	struct engine_answer ans;
	struct engine_wait *w;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	w = engine_lookup(eng, "example.com", &ans, on_answer, &a);
	assert_non_null(w);
	assert_false(lookup("example.com", &b));
	engine_cancel(w);
	fake_dns_txt(0, DNS_NXDOMAIN, 60, NULL, 0);
	assert_int_equal(a.calls, 0);
	assert_int_equal(b.calls, 1);
}

static void
test_deadline_answers_from_cache(void **state)
{
	struct outcome o, late;
	struct timeval tv = { 0, 300000 };

	discover("example.com", "a1", ENFORCE, &o);
	now_s += 301;
	/* A slow discovery: after the lookup deadline, answer with the cache. */
	assert_false(lookup("example.com", &o));
	answer_txt("v=STSv1; id=b2;", 300);
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.result, ENGINE_POLICY);
	assert_string_equal(o.mx, "mx1.example.com");
	/* While it goes on in the background, new lookups answer at once. */
	assert_true(lookup("example.com", &late));
	/* When it finishes, the next lookup sees the new policy. */
	fake_dns_addr(fake_dns_last(), DNS_OK, "192.0.2.10");
	fake_fetch_answer(fake_fetch_last(), FETCH_OK, 200, "text/plain", ENFORCE2);
	assert_true(lookup("example.com", &late));
	assert_string_equal(late.mx, "mx2.example.com");
}

static void
test_deadline_no_cache_notfound(void **state)
{
	struct outcome o;
	struct timeval tv = { 0, 300000 };

	assert_false(lookup("slow.example", &o));
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.result, ENGINE_NONE);
	/* A slow domain does not hold up another one. */
	assert_false(lookup("fast.example", &o));
	fake_dns_txt(fake_dns_last(), DNS_NXDOMAIN, 60, NULL, 0);
	assert_int_equal(o.calls, 1);
}

/* ---- a scripted store: records in memory, gets answered by the test ---- */

#define FS_MAX 16

struct fs_rec {
	bool used;
	char domain[64], id[40], text[256];
	uint32_t fetched_at, expires_at, last_used;
};

struct store_get {
	store_get_cb cb;
	void *arg;
	char domain[64];
	bool pending;
};

static struct fs_rec fs_recs[FS_MAX];
static struct store_get fs_gets[FS_MAX];
static size_t fs_ngets, fs_nputs, fs_ndels;
static char fs_last_del[64];

static struct fs_rec *
fs_find(const char *domain)
{
	for (size_t i = 0; i < FS_MAX; i++)
		if (fs_recs[i].used && strcmp(fs_recs[i].domain, domain) == 0)
			return &fs_recs[i];
	return NULL;
}

static void
fs_set(const char *domain, const char *id, const char *text, uint32_t fetched_at,
       uint32_t expires_at)
{
	struct fs_rec *r = fs_find(domain);

	for (size_t i = 0; r == NULL && i < FS_MAX; i++)
		if (!fs_recs[i].used)
			r = &fs_recs[i];
	assert_non_null(r);
	r->used = true;
	snprintf(r->domain, sizeof(r->domain), "%s", domain);
	snprintf(r->id, sizeof(r->id), "%s", id);
	snprintf(r->text, sizeof(r->text), "%s", text);
	r->fetched_at = fetched_at;
	r->expires_at = expires_at;
	r->last_used = fetched_at;
}

static void
fs_fill(const struct fs_rec *f, struct store_record *r)
{
	*r = (struct store_record){ f->domain,     f->id,         f->text,     strlen(f->text),
		                    f->fetched_at, f->expires_at, f->last_used };
}

static int
fs_load(void *impl, uint32_t now, store_load_cb fn, void *arg, char *err, size_t errlen)
{
	struct store_record r;

	for (size_t i = 0; i < FS_MAX; i++)
		if (fs_recs[i].used && fs_recs[i].expires_at > now) {
			fs_fill(&fs_recs[i], &r);
			fn(arg, &r);
		}
	return 0;
}

static void
fs_put(void *impl, const struct store_record *r)
{
	fs_nputs++;
	fs_set(r->domain, r->id, r->text, r->fetched_at, r->expires_at);
}

static void
fs_del(void *impl, const char *domain)
{
	fs_ndels++;
	snprintf(fs_last_del, sizeof(fs_last_del), "%s", domain != NULL ? domain : "(all)");
	for (size_t i = 0; i < FS_MAX; i++)
		if (domain == NULL || (fs_recs[i].used && strcmp(fs_recs[i].domain, domain) == 0))
			fs_recs[i].used = false;
}

static struct store_get *
fs_get(void *impl, const char *domain, store_get_cb cb, void *arg)
{
	struct store_get *g = &fs_gets[fs_ngets++ % FS_MAX];

	g->cb = cb;
	g->arg = arg;
	g->pending = true;
	snprintf(g->domain, sizeof(g->domain), "%s", domain);
	return g;
}

static void
fs_cancel(void *impl, struct store_get *g)
{
	g->pending = false;
}

/* Answers the last get from the records, as a real backend would later. */
static void
fs_answer_last(void)
{
	struct store_get *g = &fs_gets[(fs_ngets - 1) % FS_MAX];
	struct fs_rec *f = fs_find(g->domain);
	struct store_record r;

	assert_true(g->pending);
	g->pending = false;
	if (f != NULL)
		fs_fill(f, &r);
	g->cb(g->arg, f != NULL ? &r : NULL);
}

static const struct store_ops fs_ops = { .name = "fake",
	                                 .shared = true,
	                                 .load = fs_load,
	                                 .put = fs_put,
	                                 .del = fs_del,
	                                 .get = fs_get,
	                                 .cancel = fs_cancel };
static struct store fs_store = { &fs_ops, NULL };

/* The same store as only this daemon would write it (sqlite). */
static struct store_ops fs_local_ops;
static struct store fs_local_store = { &fs_local_ops, NULL };

static int
setup_store(void **state)
{
	struct engine_opts o = base_opts();

	o.refresh = true;
	o.refresh_window = 100;
	o.refresh_idle = 5000;
	o.refresh_concurrency = 1;
	o.refresh_scan_s = 3600;
	memset(fs_recs, 0, sizeof(fs_recs));
	memset(fs_gets, 0, sizeof(fs_gets));
	fs_ngets = fs_nputs = fs_ndels = 0;
	start_engine(&o);
	engine_set_store(eng, &fs_store);
	return 0;
}

#define SHORT "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 1000\n"

/* A fetched policy is written to the store with its lifetime; a flush deletes it there. */
static void
test_store_put_and_flush(void **state)
{
	struct outcome o;

	assert_false(lookup("example.com", &o));
	answer_txt("v=STSv1; id=a1;", 300);
	fs_answer_last(); /* asked before fetching: nothing there */
	fake_dns_addr(fake_dns_last(), DNS_OK, "192.0.2.10");
	fake_fetch_answer(fake_fetch_last(), FETCH_OK, 200, "text/plain", ENFORCE);
	assert_int_equal(o.result, ENGINE_POLICY);
	assert_int_equal(fs_nputs, 1);
	struct fs_rec *r = fs_find("example.com");

	assert_non_null(r);
	assert_string_equal(r->id, "a1");
	assert_string_equal(r->text, ENFORCE);
	assert_int_equal(r->fetched_at, now_s);
	assert_int_equal(r->expires_at, now_s + 86400);
	assert_int_equal(engine_flush(eng, "example.com"), 1);
	assert_string_equal(fs_last_del, "example.com");
	assert_null(fs_find("example.com"));
	/* Even a domain memory does not hold is deleted from the store. */
	assert_int_equal(engine_flush(eng, "gone.example"), 0);
	assert_string_equal(fs_last_del, "gone.example");
}

/* Restart: loaded policies answer at once, without DNS (the world may be unreachable). */
static void
test_store_load_answers_without_network(void **state)
{
	struct outcome o;
	char err[128];

	fs_set("example.com", "a1", ENFORCE, now_s - 1000, now_s + 85400);
	fs_set("expired.example", "x1", ENFORCE, now_s - 90000, now_s - 3600);
	fs_set("broken.example", "b1", "not a policy", now_s - 10, now_s + 1000);
	assert_int_equal(engine_load_store(eng, err, sizeof(err)), 1);
	assert_true(lookup("example.com", &o));
	assert_int_equal(o.result, ENGINE_POLICY);
	assert_int_equal(o.mode, POLICY_MODE_ENFORCE);
	assert_int_equal(fake_dns_ncalls, 0);
	/* After recheck_interval the TXT id is checked again as usual (CACHE-8). */
	now_s += 301;
	assert_false(lookup("example.com", &o));
	fake_dns_txt(fake_dns_last(), DNS_TIMEOUT, 0, NULL, 0);
	assert_int_equal(o.result, ENGINE_POLICY);
	/* The expired and the unparsable record were not loaded. */
	struct engine_entry v;

	assert_false(engine_get(eng, "expired.example", &v));
	assert_false(engine_get(eng, "broken.example", &v));
}

/* Another relay fetched the new id: it is taken from the store, no HTTPS fetch here. */
static void
test_store_shared_fetch(void **state)
{
	struct outcome o;

	fs_set("example.com", "b2", ENFORCE2, now_s - 5, now_s + 86395);
	assert_false(lookup("example.com", &o));
	answer_txt("v=STSv1; id=b2;", 300);
	assert_int_equal(fake_dns_ncalls, 1);
	fs_answer_last();
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.result, ENGINE_POLICY);
	assert_string_equal(o.mx, "mx2.example.com");
	assert_int_equal(fake_fetch_ncalls, 0);
	/* A record under another id than the TXT record is not a substitute for a fetch. */
	fs_set("other.example", "old", ENFORCE, now_s - 5, now_s + 86395);
	assert_false(lookup("other.example", &o));
	answer_txt("v=STSv1; id=new;", 300);
	fs_answer_last();
	assert_int_equal(fake_dns_calls[fake_dns_last()].type, DNS_TYPE_ADDR);
}

/* TXT gone or failing and nothing in memory: a valid policy any relay knows still applies. */
static void
test_store_never_weaker(void **state)
{
	struct outcome o;

	fs_set("example.com", "a1", ENFORCE, now_s - 5, now_s + 86395);
	assert_false(lookup("example.com", &o));
	fake_dns_txt(fake_dns_last(), DNS_SERVFAIL, 0, NULL, 0);
	fs_answer_last();
	assert_int_equal(o.result, ENGINE_POLICY);
	assert_int_equal(o.mode, POLICY_MODE_ENFORCE);
	/* A domain without any policy asks the store once, not on every recheck. */
	assert_false(lookup("plain.example", &o));
	fake_dns_txt(fake_dns_last(), DNS_NXDOMAIN, 60, NULL, 0);
	fs_answer_last();
	assert_int_equal(o.result, ENGINE_NONE);
	size_t gets = fs_ngets;

	now_s += 61;
	assert_false(lookup("plain.example", &o));
	fake_dns_txt(fake_dns_last(), DNS_NXDOMAIN, 60, NULL, 0);
	assert_int_equal(o.calls, 1);
	assert_int_equal(fs_ngets, gets);
}

/* A store only this daemon writes holds nothing memory lacks until memory evicts something:
 * it is not asked before fetches until then (a sqlite SELECT per new domain saved). */
static void
test_store_local_asked_after_evictions(void **state)
{
	struct outcome o;
	struct engine_opts opts = base_opts();

	opts.max_entries = 1;

	fs_local_ops = fs_ops;
	fs_local_ops.shared = false;
	engine_set_store(eng, &fs_local_store);
	assert_false(lookup("example.com", &o));
	answer_txt("v=STSv1; id=a1;", 300);
	assert_int_equal(fs_ngets, 0);
	assert_int_equal(fake_dns_calls[fake_dns_last()].type, DNS_TYPE_ADDR);
	fake_dns_addr(fake_dns_last(), DNS_OK, "192.0.2.10");
	fake_fetch_answer(fake_fetch_last(), FETCH_OK, 200, "text/plain", ENFORCE);
	/* A second domain evicts the first: from now on the store is asked. */
	engine_set_opts(eng, &opts);
	assert_false(lookup("other.example", &o));
	fake_dns_txt(fake_dns_last(), DNS_NXDOMAIN, 60, NULL, 0);
	assert_int_equal(fs_ngets, 1); /* no policy in memory: asked once */
	fs_answer_last();
	assert_false(lookup("example.com", &o));
	answer_txt("v=STSv1; id=a1;", 300);
	assert_int_equal(fs_ngets, 2);
	fs_answer_last();
	assert_int_equal(o.result, ENGINE_POLICY);
	assert_int_equal(fake_fetch_ncalls, 1); /* back from the store, not fetched again */
}

/* Proactive refresh: due before expiry, never makes a lookup wait, keeps the old policy on
 * failure and backs off; idle domains are left to expire. */
static void
test_refresh(void **state)
{
	struct outcome o;
	struct engine_entry v;
	struct engine_stats st;

	assert_false(lookup("example.com", &o));
	answer_txt("v=STSv1; id=a1;", 300);
	fs_answer_last();
	fake_dns_addr(fake_dns_last(), DNS_OK, "192.0.2.10");
	fake_fetch_answer(fake_fetch_last(), FETCH_OK, 200, "text/plain", SHORT);
	uint32_t fetched = now_s;

	assert_true(engine_get(eng, "example.com", &v));
	/* max_age 1000, window 100: due at 900 s at the latest, 810 s at the earliest. */
	assert_true(v.refresh_at <= fetched + 900 && v.refresh_at >= fetched + 810);
	now_s = fetched + 200;
	assert_true(lookup("example.com", &o)); /* in use */
	now_s = v.refresh_at - 1;
	engine_refresh_scan(eng);
	size_t dns_before = fake_dns_ncalls;

	assert_int_equal(dns_before, 2);
	now_s = v.refresh_at;
	engine_refresh_scan(eng);
	assert_int_equal(fake_dns_ncalls, dns_before + 1);
	/* A lookup meanwhile is answered from the cache at once. */
	now_s += 1;
	assert_true(lookup("example.com", &o));
	assert_int_equal(o.result, ENGINE_POLICY);
	/* Unchanged id: refreshed anyway (a refresh is a refetch). */
	answer_txt("v=STSv1; id=a1;", 300);
	fs_answer_last(); /* the store holds only our own fetch: not newer, so fetch */
	fake_dns_addr(fake_dns_last(), DNS_OK, "192.0.2.10");
	fake_fetch_answer(fake_fetch_last(), FETCH_OK, 200, "text/plain", SHORT);
	assert_int_equal(fake_fetch_ncalls, 2);
	assert_true(engine_get(eng, "example.com", &v));
	assert_int_equal(v.fetched_at, now_s);
	assert_int_equal(fs_find("example.com")->fetched_at, now_s);
	engine_get_stats(eng, &st);
	assert_int_equal(st.refresh_started, 1);
	assert_int_equal(st.refresh_ok, 1);
	assert_int_equal(st.refresh_running, 0);

	/* A failed refresh keeps the policy and backs off. */
	assert_true(engine_get(eng, "example.com", &v));
	now_s = v.refresh_at;
	engine_refresh_scan(eng);
	answer_txt("v=STSv1; id=a1;", 300);
	fs_answer_last();
	fake_dns_addr(fake_dns_last(), DNS_OK, "192.0.2.10");
	fake_fetch_answer(fake_fetch_last(), FETCH_OK, 503, "text/plain", "down");
	assert_true(lookup("example.com", &o));
	assert_int_equal(o.result, ENGINE_POLICY);
	engine_get_stats(eng, &st);
	assert_int_equal(st.refresh_failed, 1);
	size_t fetches = fake_fetch_ncalls;

	now_s += 10;
	engine_refresh_scan(eng); /* backing off: nothing starts */
	assert_int_equal(st.refresh_started, 2);
	engine_get_stats(eng, &st);
	assert_int_equal(st.refresh_started, 2);
	assert_int_equal(fake_fetch_ncalls, fetches);

	/* Idle for longer than refresh_idle: not refreshed, expires. */
	assert_false(lookup("idle.example", &o));
	answer_txt("v=STSv1; id=i1;", 300);
	fs_answer_last();
	fake_dns_addr(fake_dns_last(), DNS_OK, "192.0.2.10");
	fake_fetch_answer(fake_fetch_last(), FETCH_OK, 200, "text/plain",
	                  "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 86400\n");
	now_s += 6000;
	assert_true(engine_get(eng, "idle.example", &v));
	assert_int_equal(v.refresh_at, 0);
}

#define T(f)  cmocka_unit_test_setup_teardown(f, setup, teardown)
#define TS(f) cmocka_unit_test_setup_teardown(f, setup_store, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_no_txt_negative_cached),
		T(test_enforce_fetched_and_cached),
		T(test_unchanged_id_no_refetch),
		T(test_changed_id_refetches),
		T(test_txt_removed_keeps_policy),
		T(test_txt_invalid_or_multiple_keeps_policy),
		T(test_dns_failure),
		cmocka_unit_test_setup_teardown(test_dns_failure_temp_knob, setup_temp, teardown),
		T(test_fetch_failure_keeps_cache_and_backs_off),
		T(test_fetch_failure_no_cache),
		T(test_expiry_not_extended_by_same_id),
		T(test_expiry_renewed_by_fetch),
		T(test_max_age_zero),
		T(test_none_replaces_enforce),
		T(test_coalescing),
		T(test_cancel),
		T(test_deadline_answers_from_cache),
		T(test_deadline_no_cache_notfound),
		TS(test_store_put_and_flush),
		TS(test_store_load_answers_without_network),
		TS(test_store_shared_fetch),
		TS(test_store_never_weaker),
		TS(test_refresh),
		TS(test_store_local_asked_after_evictions),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
