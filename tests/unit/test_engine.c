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

static int
setup(void **state)
{
	struct engine_opts o = {
		.recheck_interval = 300,
		.fail_ttl = 30,
		.backoff = 300,
		.lookup_timeout_ms = 100,
		.max_entries = 1000,
		.clock = test_clock,
	};

	fake_io_reset();
	now_s = 1700000000;
	base = event_base_new();
	dns = dns_new(base, NULL, NULL);
	fetch = fetch_new(base, NULL);
	eng = engine_new(base, dns, fetch, &o);
	return 0;
}

static int
setup_temp(void **state)
{
	struct engine_opts o = {
		.recheck_interval = 300,
		.fail_ttl = 30,
		.backoff = 300,
		.lookup_timeout_ms = 100,
		.max_entries = 1000,
		.dns_failure_temp = true,
		.clock = test_clock,
	};

	fake_io_reset();
	now_s = 1700000000;
	base = event_base_new();
	dns = dns_new(base, NULL, NULL);
	fetch = fetch_new(base, NULL);
	eng = engine_new(base, dns, fetch, &o);
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

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
