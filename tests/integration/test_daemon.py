#!/usr/bin/env python3
"""test_daemon.py: mtastsd end to end: real unbound, nginx, CA and postmap (RFC-NOTES rule IDs)."""

import socket
import threading
import time

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "world"))

import taplib  # noqa: E402

taplib.enter_netns()

from world import World, socketmap_query, socketmap_raw  # noqa: E402

SM = "socketmap:inet:127.0.0.1:8461:postfix"
TCP = "tcp:127.0.0.1:8462"
RECHECK = 1  # cache.recheck_interval and the TXT TTLs below: verdicts go stale within a second

CONFIG = """
listen = (
  { protocol = "socketmap"; address = "127.0.0.1:8461"; },
  { protocol = "socketmap"; address = "unix:%(workdir)s/socketmap.sock"; },
  { protocol = "tcp_table"; address = "127.0.0.1:8462"; map = "postfix"; }
);
maps = ( { name = "postfix"; }, { name = "strict"; strict_testing = true; } );
daemon: { log_level = "debug"; runtime_dir = "%(workdir)s"; allow_root = true; };
limits: { lookup_timeout = 3000; };
dns: { servers = ["%(dns)s"]; timeout = 500; tries = 2; max_ttl = 1; negative_ttl = 1;
       servfail_ttl = 1; };
fetch: { timeout = 2000; ca_file = "%(ca)s"; };
control: { socket = "%(workdir)s/control.sock"; };
cache: { recheck_interval = %(recheck)d; };
sqlite: { path = "%(workdir)s/cache.db"; write_interval = 100; };
"""


def enforce(domain, *mx, max_age=86400):
    lines = "".join(f"mx: {m}\n" for m in (mx or (f"mx1.{domain}",)))
    return f"version: STSv1\nmode: enforce\n{lines}max_age: {max_age}\n"


def setup():
    w = World()
    w.start()
    with w.batch():
        w.add_domain("enforce.test", txt_ttl=RECHECK)
        w.add_domain("wild.test", policy=enforce("wild.test", "*.wild.test", "mx9.wild.test"))
        w.add_domain("testing.test", policy="version: STSv1\nmode: testing\nmx: mx1.testing.test"
                     "\nmax_age: 86400\n")
        w.add_domain("none.test", policy="version: STSv1\nmode: none\nmax_age: 86400\n")
        w.add_domain("notxt.test", txt=None)
        w.add_domain("twotxt.test", txt=["v=STSv1; id=1;", "v=STSv1; id=2;"])
        w.add_domain("badid.test", txt=["v=STSv1; id=not-alnum;"])
        w.add_domain("e404.test", status=404)
        w.add_domain("e500.test", status=500)
        w.add_domain("redirect.test", redirect_to="https://mta-sts.enforce.test/.well-known/mta-sts.txt")
        w.add_domain("ctype.test", content_type="text/html")
        w.add_domain("big.test", body_bytes=65537)
        w.add_domain("exact.test", body_bytes=65536)
        w.add_domain("stall.test", stall="drip", server="python")
        w.add_domain("wrongname.test", cert="wrong-name")
        w.add_domain("expired.test", cert="expired")
        w.add_domain("selfsigned.test", cert="self-signed")
        w.add_domain("nointer.test", cert="no-intermediate")
        w.add_domain("cnonly.test", cert="cn-only")
        w.add_domain("idchange.test", txt_ttl=RECHECK)
        w.add_domain("idsame.test", txt_ttl=RECHECK)
        w.add_domain("txtgone.test", txt_ttl=RECHECK)
        w.add_domain("fetchfail.test", txt_ttl=RECHECK)
        w.add_domain("short.test", txt_ttl=RECHECK, policy=enforce("short.test", max_age=3))
        w.add_domain("relay.test")
        w.add_domain("upper.test")
        w.add_domain("crowd.test")
        w.add_domain("unix.test")
        w.add_domain("tcp.test")
    conf = CONFIG % dict(workdir=w.workdir, dns=w.dns_server, ca=w.ca_file, recheck=RECHECK)
    d = w.daemon(conf)
    w.reset_counts()
    return dict(w=w, d=d)


def teardown(ctx):
    if ctx:
        ctx["w"].stop()


def pm(ctx, key, spec=SM):
    r = ctx["w"].postmap_query(key, spec)
    return r.rc, r.out.strip()


def secure(*patterns):
    return "secure match=" + ":".join(patterns) + " servername=hostname"


def assert_notfound(ctx, key, spec=SM):
    rc, out = pm(ctx, key, spec)
    assert (rc, out) == (1, ""), f"{key}: expected NOTFOUND (rc 1, no output), got rc={rc} {out!r}"


def assert_secure(ctx, key, *patterns, spec=SM):
    rc, out = pm(ctx, key, spec)
    assert (rc, out) == (0, secure(*patterns)), f"{key}: got rc={rc} {out!r}"


T = taplib.test


@T("APPLY-5 enforce, exact pattern, via postmap -q socketmap")
def _(ctx):
    assert_secure(ctx, "enforce.test", "mx1.enforce.test")
    assert ctx["w"].request_count("enforce.test") == 1


@T("APPLY-5 MX-4 wildcard pattern sent as .domain, file order kept")
def _(ctx):
    assert_secure(ctx, "wild.test", ".wild.test", "mx9.wild.test")


@T("POL-8 testing mode: NOTFOUND; strict_testing map: enforced")
def _(ctx):
    assert_notfound(ctx, "testing.test")
    assert_secure(ctx, "testing.test", "mx1.testing.test",
                  spec="socketmap:inet:127.0.0.1:8461:strict")


@T("POL-8 mode none: NOTFOUND")
def _(ctx):
    assert_notfound(ctx, "none.test")
    assert ctx["w"].request_count("none.test") == 1


@T("TXT-10 no TXT record: NOTFOUND and no HTTPS request")
def _(ctx):
    assert_notfound(ctx, "notxt.test")
    assert ctx["w"].request_count("notxt.test") == 0


@T("TXT-6 two STS candidates: NOTFOUND and no HTTPS request")
def _(ctx):
    assert_notfound(ctx, "twotxt.test")
    assert ctx["w"].request_count("twotxt.test") == 0


@T("TXT-4 invalid id: NOTFOUND and no HTTPS request")
def _(ctx):
    assert_notfound(ctx, "badid.test")
    assert ctx["w"].request_count("badid.test") == 0


@T("FETCH-4 FETCH-7 HTTP 404: NOTFOUND")
def _(ctx):
    assert_notfound(ctx, "e404.test")
    assert ctx["w"].request_count("e404.test") == 1


@T("FETCH-4 FETCH-7 HTTP 500: NOTFOUND")
def _(ctx):
    assert_notfound(ctx, "e500.test")


@T("FETCH-4 redirect not followed: NOTFOUND, target never requested")
def _(ctx):
    before = ctx["w"].request_count("enforce.test")
    assert_notfound(ctx, "redirect.test")
    assert ctx["w"].request_count("redirect.test") == 1
    assert ctx["w"].request_count("enforce.test") == before


@T("POL-2 wrong Content-Type: NOTFOUND")
def _(ctx):
    assert_notfound(ctx, "ctype.test")


@T("FETCH-6 body of 65537 bytes rejected; exactly 65536 accepted")
def _(ctx):
    assert_notfound(ctx, "big.test")
    assert_secure(ctx, "exact.test", "mx1.exact.test")


@T("FETCH-6 body stalling past the deadline: NOTFOUND within the lookup deadline")
def _(ctx):
    t0 = time.monotonic()
    assert_notfound(ctx, "stall.test")
    took = time.monotonic() - t0
    assert took < 3.9, f"answer took {took:.2f}s, lookup_timeout is 3s"


@T("FETCH-1 FETCH-2 certificate for the wrong name: NOTFOUND")
def _(ctx):
    assert_notfound(ctx, "wrongname.test")


@T("FETCH-1 expired certificate: NOTFOUND")
def _(ctx):
    assert_notfound(ctx, "expired.test")


@T("FETCH-1 self-signed certificate: NOTFOUND")
def _(ctx):
    assert_notfound(ctx, "selfsigned.test")


@T("FETCH-1 chain without its intermediate: NOTFOUND")
def _(ctx):
    assert_notfound(ctx, "nointer.test")


@T("FETCH-2 name only in the subject CN, no SAN dNSName: NOTFOUND")
def _(ctx):
    assert_notfound(ctx, "cnonly.test")


@T("CACHE-3 id change causes a refetch")
def _(ctx):
    w = ctx["w"]
    assert_secure(ctx, "idchange.test", "mx1.idchange.test")
    w.set_policy("idchange.test", enforce("idchange.test", "mx2.idchange.test"))
    w.set_txt("idchange.test", ["v=STSv1; id=2;"], ttl=RECHECK)
    time.sleep(RECHECK + 1.2)
    assert_secure(ctx, "idchange.test", "mx2.idchange.test")
    assert w.request_count("idchange.test") == 2


@T("CACHE-3 id unchanged: no refetch even when the file changed (nginx log counts)")
def _(ctx):
    w = ctx["w"]
    assert_secure(ctx, "idsame.test", "mx1.idsame.test")
    w.set_policy("idsame.test", enforce("idsame.test", "mx2.idsame.test"))
    time.sleep(RECHECK + 1.2)
    assert_secure(ctx, "idsame.test", "mx1.idsame.test")
    assert w.request_count("idsame.test") == 1


@T("TXT-7 TXT removed: the cached policy stays in force")
def _(ctx):
    w = ctx["w"]
    assert_secure(ctx, "txtgone.test", "mx1.txtgone.test")
    w.remove_txt("txtgone.test")
    time.sleep(RECHECK + 1.2)
    assert_secure(ctx, "txtgone.test", "mx1.txtgone.test")


@T("FETCH-8 refetch fails (new id, 404): the cached policy stays in force")
def _(ctx):
    w = ctx["w"]
    assert_secure(ctx, "fetchfail.test", "mx1.fetchfail.test")
    w.set_policy("fetchfail.test", None)
    w.set_txt("fetchfail.test", ["v=STSv1; id=2;"], ttl=RECHECK)
    time.sleep(RECHECK + 1.2)
    assert_secure(ctx, "fetchfail.test", "mx1.fetchfail.test")
    assert w.request_count("fetchfail.test") == 2


@T("CACHE-1 CACHE-5 max_age expiry: not renewed by an unchanged id; gone when refetch fails")
def _(ctx):
    w = ctx["w"]
    assert_secure(ctx, "short.test", "mx1.short.test")
    w.set_policy("short.test", None)
    time.sleep(3.5)
    assert_notfound(ctx, "short.test")
    assert w.request_count("short.test") == 2
    assert "domain=short.test id=1 mode=enforce max_age=3 result=expired" in ctx["d"].log_text()


@T("SEL-3 .parent probe: NOTFOUND with no DNS query at all")
def _(ctx):
    w = ctx["w"]
    assert_notfound(ctx, ".enforce.test")
    assert_notfound(ctx, ".test")
    names = [q[1].rstrip(".").lower() for q in w.dns_queries()]
    assert "_mta-sts.test" not in names and "_mta-sts.enforce.test" in names, names


@T("SEL-1 [relay]:587 key is the smart host's policy domain")
def _(ctx):
    assert_secure(ctx, "[relay.test]:587", "mx1.relay.test")
    assert_secure(ctx, "[relay.test]", "mx1.relay.test")


@T("SEL-2 address literals: NOTFOUND")
def _(ctx):
    assert_notfound(ctx, "[192.0.2.1]")
    assert_notfound(ctx, "[192.0.2.1]:25")


@T("SEL-5 uppercase and trailing dot fold to the same policy domain")
def _(ctx):
    assert_secure(ctx, "UPPER.Test.", "mx1.upper.test")
    assert ctx["w"].request_count("upper.test") == 1
    assert_secure(ctx, "upper.test", "mx1.upper.test")
    assert ctx["w"].request_count("upper.test") == 1


@T("PFX-1 malformed netstring: the connection is closed")
def _(ctx):
    for bad in (b"12x:postfix a,", b"9:postfix x;", b":postfix,", b"-1:x,"):
        data, closed = socketmap_raw("127.0.0.1", 8461, bad)
        assert (data, closed) == (b"", True), (bad, data, closed)


@T("PFX-1 oversize request: closed before the payload is read")
def _(ctx):
    s = socket.create_connection(("127.0.0.1", 8461), timeout=3)
    s.sendall(b"5000:")
    assert s.recv(100) == b""
    s.close()


@T("PFX-3 unknown map name: PERM; no space: PERM")
def _(ctx):
    r = socketmap_query("127.0.0.1", 8461, "nosuchmap", "enforce.test")
    assert r.startswith("PERM "), r
    data, _ = socketmap_raw("127.0.0.1", 8461, b"7:postfix,")
    assert data.startswith(b"43:PERM "), data
    r = ctx["w"].postmap_query("enforce.test", "socketmap:inet:127.0.0.1:8461:nosuchmap")
    assert r.out == "" and "unknown map name" in r.stderr, (r.rc, r.out, r.stderr)


@T("PFX-1 pipelined requests on one connection are answered in order")
def _(ctx):
    s = socket.create_connection(("127.0.0.1", 8461), timeout=5)
    reqs = [b"postfix notxt.test", b"postfix enforce.test", b"postfix .x.test", b"postfix enforce.test"]
    s.sendall(b"".join(b"%d:%s," % (len(r), r) for r in reqs))
    buf = b""
    deadline = time.monotonic() + 5
    while buf.count(b",") < 4 and time.monotonic() < deadline:
        buf += s.recv(4096)
    s.close()
    want = [b"NOTFOUND ", b"OK " + secure("mx1.enforce.test").encode(), b"NOTFOUND ",
            b"OK " + secure("mx1.enforce.test").encode()]
    assert buf == b"".join(b"%d:%s," % (len(x), x) for x in want), buf


@T("200 concurrent lookups for one uncached domain: one fetch")
def _(ctx):
    results = []
    lock = threading.Lock()

    def one():
        r = socketmap_query("127.0.0.1", 8461, "postfix", "crowd.test")
        with lock:
            results.append(r)
    threads = [threading.Thread(target=one) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 200
    assert set(results) == {"OK " + secure("mx1.crowd.test")}, set(results)
    assert ctx["w"].request_count("crowd.test") == 1


@T("tcp_table listener via postmap -q tcp:")
def _(ctx):
    assert_secure(ctx, "tcp.test", "mx1.tcp.test", spec=TCP)
    assert_notfound(ctx, ".tcp.test", spec=TCP)


@T("unix socket listener via postmap -q socketmap:unix:")
def _(ctx):
    spec = f"socketmap:unix:{ctx['w'].workdir}/socketmap.sock:postfix"
    assert_secure(ctx, "unix.test", "mx1.unix.test", spec=spec)


@T("Logging: one line per policy event with domain= id= mode= max_age= mx= result=")
def _(ctx):
    log = ctx["d"].log_text()
    assert "policy domain=enforce.test id=1 mode=enforce max_age=86400 mx=mx1.enforce.test " \
           "result=fetched" in log
    assert "domain=e404.test id=1 result=fail reason=http" in log
    assert "domain=idchange.test id=2 mode=enforce max_age=86400 mx=mx2.idchange.test " \
           "result=changed" in log


@T("SIGTERM: stops accepting, exits 0")
def _(ctx):
    d = ctx["d"]
    d.stop()
    assert d.returncode == 0, d.returncode
    assert "mtastsd stopped" in d.log_text()


taplib.run(setup, teardown)
