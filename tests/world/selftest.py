#!/usr/bin/env python3
"""selftest.py: prove the integration test world works, with real clients; TAP output.

Runs itself under tests/world/netns-run when started outside it (exit 77 = SKIP when that is not
possible). Environment: KEEP_WORLD=1 keeps the work directory even on success; WORLD_WORKDIR=DIR
uses DIR instead of a fresh temporary one. A watchdog bails out after 120 s.
"""

import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import taplib   # noqa: E402

taplib.enter_netns()

import world as W   # noqa: E402

CURL = shutil.which("curl")
DIG = shutil.which("dig")
OPENSSL = shutil.which("openssl")
FIXED = str(HERE / "fixed_socketmap.py")
WATCHDOG_SECONDS = 120


class Skip(Exception):
    pass


TESTS = []


def test(description):
    def register(fn):
        TESTS.append((description, fn))
        return fn
    return register


def check(cond, msg="check failed"):
    if not cond:
        raise AssertionError(msg)


def run(cmd, timeout=10, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def curl(w, domain, *extra, max_time=5):
    if not CURL:
        raise Skip("curl not installed")
    return run([CURL, "-sS", "--max-time", str(max_time), *extra, *w.curl_args(domain), w.url(domain)],
               timeout=max_time + 5)


GOOD_POLICY = "version: STSv1\nmode: enforce\nmx: mx1.good.test\nmax_age: 86400\n"
BAD_CERTS = {   # kind: (python ssl message, curl message), all curl exit 60
    "wrong-name": ("Hostname mismatch", "no alternative certificate subject name matches"),
    "expired": ("certificate has expired", "certificate has expired"),
    "not-yet-valid": ("certificate is not yet valid", "certificate is not yet valid"),
    "self-signed": (r"self.signed certificate \(", r"self.signed certificate$"),
    "no-intermediate": ("unable to get local issuer certificate", "unable to get local issuer certificate"),
    "untrusted-root": ("self.signed certificate in certificate chain",
                       "self.signed certificate in certificate chain"),
}


def cert_domain(kind):
    return kind.replace("-", "") + ".test"


def build_world(workdir):
    w = W.World(workdir)
    with w.batch():
        w.add_domain("good.test")
        w.add_domain("multi.test", txt=[["v=STSv1; id=", "multi1"]])
        w.add_domain("several.test", txt=["v=STSv1; id=one", "v=STSv1; id=two", "v=spf1 -all"])
        w.add_domain("long.test", txt=["v=STSv1; id=long; ext=" + "a" * 300])
        w.add_domain("cname.test", txt_cname="_mta-sts.provider.example", txt=["v=STSv1; id=prov1"])
        w.add_domain("nullmx.test", mx=[(0, ".")])
        w.add_domain("ttl.test", txt_ttl=42, neg_ttl=17)
        w.add_domain("nodata.test", txt=[])
        w.add_domain("notxt.test", txt=None)
        w.add_domain("servfail.test", servfail=True)
        w.add_domain("timeout.test", servfail="timeout")
        w.add_domain("refused.test", servfail="refused")
        w.add_domain("change.test", txt=["v=STSv1; id=first"])
        for kind in W.CERT_KINDS:
            if kind != "good":
                w.add_domain(cert_domain(kind), cert=kind)
        w.add_domain("nopolicy.test", policy=None)
        w.add_domain("e500.test", status=500)
        w.add_domain("e201.test", status=201)
        w.add_domain("redir.test", redirect_to="https://mta-sts.target.test/.well-known/mta-sts.txt")
        w.add_domain("target.test")
        w.add_domain("html.test", content_type="text/html")
        w.add_domain("noct.test", content_type=None)
        w.add_domain("size64k.test", body_bytes=65536)
        w.add_domain("size64k1.test", body_bytes=65537)
        w.add_domain("drip.test", stall=True)
        w.add_domain("hdrstall.test", stall="headers")
        w.add_domain("hsstall.test", stall="handshake")
        w.add_domain("trunc.test", truncate=True)
        w.add_domain("chunked.test", truncate="chunked")
        w.add_domain("down.test", https=False, address="127.0.0.9")
        w.add_domain("py.test", server="python")
        w.add_domain("counted.test")
        w.add_domain("edit.test")
        if w.ipv6:
            w.add_domain("v6.test", address=["127.0.0.1", "::1"])
    return w


STATE = {}


# ---- namespace and start --------------------------------------------------------------------------

@test("netns-run: private namespace, lo up, any 127/8 address bindable on port 443")
def t_netns(w):
    check(os.environ.get("NETNS_RUN_INSIDE") == "1")
    out = run(["ip", "-o", "addr", "show", "dev", "lo"]).stdout
    check("127.0.0.1/8" in out, out)
    s = socket.socket()
    s.bind(("127.0.0.7", 443))
    s.close()
    return f"mode={os.environ.get('NETNS_RUN_MODE')} ipv6={w.ipv6}"


@test("world starts: CA, unbound on 127.0.0.1:53, nginx on :443, Python TLS server on 127.0.0.2:443")
def t_started(w):
    check(w.started)
    check(w.dns_server == "127.0.0.1:53")
    check(Path(w.ca_file).read_text().startswith("-----BEGIN CERTIFICATE-----"))
    check(W.tcp_accepts("127.0.0.1", 443) and W.tcp_accepts("127.0.0.2", 443))
    return f"start took {STATE['start_seconds']:.2f}s for {len(w.specs)} domains"


# ---- DNS ------------------------------------------------------------------------------------------

@test("DNS: one TXT RR with two character-strings (joined without spaces)")
def t_txt_multi(w):
    r = w.dns_query("_mta-sts.multi.test", "TXT")
    txt = r.rrs("TXT")
    check(r.rcode_name == "NOERROR" and len(txt) == 1, r)
    check(txt[0].value == [b"v=STSv1; id=", b"multi1"], txt)
    check(r.txt() == ["v=STSv1; id=multi1"])


@test("DNS: several TXT RRs at one name")
def t_txt_several(w):
    r = w.dns_query("_mta-sts.several.test", "TXT")
    check(sorted(r.txt()) == ["v=STSv1; id=one", "v=STSv1; id=two", "v=spf1 -all"], r)


@test("DNS: a TXT record longer than 255 bytes is split into 255-byte strings")
def t_txt_long(w):
    r = w.dns_query("_mta-sts.long.test", "TXT")
    check([len(s) for s in r.rrs("TXT")[0].value] == [255, 67], r)
    check(r.txt() == ["v=STSv1; id=long; ext=" + "a" * 300])


@test("DNS: _mta-sts CNAME is chased; the answer holds the CNAME and the target's TXT")
def t_cname(w):
    r = w.dns_query("_mta-sts.cname.test", "TXT")
    types = [(rr.name, rr.type) for rr in r.answer]
    check(("_mta-sts.cname.test.", "CNAME") in types, r)
    check(("_mta-sts.provider.example.", "TXT") in types, r)
    check(r.txt() == ["v=STSv1; id=prov1"], r)


@test("DNS: MX and null MX")
def t_mx(w):
    check([rr.value for rr in w.dns_query("good.test", "MX").rrs("MX")] == [(10, "mx1.good.test.")])
    check([rr.value for rr in w.dns_query("nullmx.test", "MX").rrs("MX")] == [(0, ".")])
    check(w.dns_query("mx1.good.test", "A").rrs("A")[0].value == "127.0.0.1")


@test("DNS: A of mta-sts.<domain>; AAAA is NODATA with the zone's SOA")
def t_a(w):
    check(w.dns_query("mta-sts.good.test", "A").rrs("A")[0].value == "127.0.0.1")
    r = w.dns_query("mta-sts.good.test", "AAAA")
    check(r.rcode_name == "NOERROR" and not r.answer and r.soa() and r.soa().name == "good.test.", r)


@test("DNS: NXDOMAIN carries the SOA; negative TTL = SOA TTL = minimum (60 by default)")
def t_nxdomain(w):
    r = w.dns_query("_mta-sts.notxt.test", "TXT")
    check(r.rcode_name == "NXDOMAIN", r)
    soa = r.soa()
    check(soa is not None and soa.name == "notxt.test." and soa.ttl == 60 and soa.value[6] == 60, r)


@test("DNS: per-record TTL (txt_ttl=42) and per-domain negative TTL (neg_ttl=17)")
def t_ttls(w):
    r = w.dns_query("_mta-sts.ttl.test", "TXT")
    check(r.rrs("TXT")[0].ttl == 42, r)
    r = w.dns_query("nothing.ttl.test", "TXT")
    check(r.rcode_name == "NXDOMAIN" and r.soa().ttl == 17 and r.soa().value[6] == 17, r)


@test("DNS: txt=[] gives NODATA (name exists, no TXT) with SOA")
def t_nodata(w):
    r = w.dns_query("_mta-sts.nodata.test", "TXT")
    check(r.rcode_name == "NOERROR" and not r.answer and r.soa() is not None, r)


@test("DNS: runtime changes: set_txt (new id, multi-RR), remove_txt (NXDOMAIN), restore")
def t_runtime_txt(w):
    check(w.dns_query("_mta-sts.change.test", "TXT").txt() == ["v=STSv1; id=first"])
    t0 = time.monotonic()
    w.set_txt("change.test", ["v=STSv1; id=second"])
    check(w.dns_query("_mta-sts.change.test", "TXT").txt() == ["v=STSv1; id=second"])
    w.set_txt("change.test", ["v=STSv1; id=a", ["v=STSv1; ", "id=b"]])
    check(sorted(w.dns_query("_mta-sts.change.test", "TXT").txt()) == ["v=STSv1; id=a", "v=STSv1; id=b"])
    w.remove_txt("change.test")
    check(w.dns_query("_mta-sts.change.test", "TXT").rcode_name == "NXDOMAIN")
    w.set_txt("change.test", ["v=STSv1; id=third"], ttl=5)
    r = w.dns_query("_mta-sts.change.test", "TXT")
    check(r.txt() == ["v=STSv1; id=third"] and r.rrs("TXT")[0].ttl == 5, r)
    w.set_txt("cname.test", ["v=STSv1; id=prov2"])   # at the CNAME target
    check(w.dns_query("_mta-sts.cname.test", "TXT").txt() == ["v=STSv1; id=prov2"])
    return f"5 changes in {time.monotonic() - t0:.2f}s"


@test("DNS: SERVFAIL for a chosen name, quickly; cleared at runtime")
def t_servfail(w):
    t0 = time.monotonic()
    r = w.dns_query("_mta-sts.servfail.test", "TXT", timeout=3)
    took = time.monotonic() - t0
    check(r.rcode_name == "SERVFAIL" and took < 1.5, f"{r} after {took:.2f}s")
    check(w.dns_query("mta-sts.servfail.test", "A").rcode_name == "NOERROR")
    w.dns_fail("mta-sts.good.test", "servfail")
    check(w.dns_query("mta-sts.good.test", "A").rcode_name == "SERVFAIL")
    w.dns_fail("mta-sts.good.test", None)
    check(w.dns_query("mta-sts.good.test", "A").rrs("A")[0].value == "127.0.0.1")
    return f"SERVFAIL after {took * 1000:.0f} ms"


@test("DNS: timeout (query dropped) for a chosen name; REFUSED for another")
def t_timeout(w):
    t0 = time.monotonic()
    try:
        r = w.dns_query("_mta-sts.timeout.test", "TXT", timeout=1.0)
        raise AssertionError(f"got an answer: {r}")
    except TimeoutError:
        pass
    check(time.monotonic() - t0 >= 0.9)
    check(w.dns_query("_mta-sts.refused.test", "TXT").rcode_name == "REFUSED")
    check(w.dns_query("good.test", "MX").rcode_name == "NOERROR")


@test("DNS: TCP queries work too")
def t_tcp(w):
    check(w.dns_query("_mta-sts.multi.test", "TXT", tcp=True).txt() == ["v=STSv1; id=multi1"])


@test("DNS: dig agrees (multi-string TXT, CNAME)")
def t_dig(w):
    if not DIG:
        raise Skip("dig not installed (Debian package bind9-dnsutils)")
    out = run([DIG, "@127.0.0.1", "+short", "TXT", "_mta-sts.multi.test"]).stdout
    check('"v=STSv1; id=" "multi1"' in out, out)
    out = run([DIG, "@127.0.0.1", "+noall", "+answer", "TXT", "_mta-sts.cname.test"]).stdout
    check("CNAME" in out and "prov2" in out, out)


@test("DNS: unbound-control CLI talks to the world's unix control socket (no TLS)")
def t_unbound_control(w):
    p = run(["unbound-control", "-c", str(w.dns.dir / "unbound.conf"), "status"])
    check(p.returncode == 0 and "is running" in p.stdout, p.stdout + p.stderr)


@test("DNS: dns_queries() reports client queries from unbound's log")
def t_dns_log(w):
    w.reset_counts()
    w.dns_query("_mta-sts.good.test", "TXT")
    w.dns_query("_mta-sts.good.test", "TXT")
    got = W.wait_until(lambda: len(w.dns_queries("_mta-sts.good.test", "TXT")) >= 2 and
                       w.dns_queries("_mta-sts.good.test", "TXT"), 2, what="query log")
    check(len(got) == 2 and got[0][0] == "127.0.0.1", got)


# ---- HTTPS ----------------------------------------------------------------------------------------

@test("HTTPS: curl --cacert fetches the good policy (200, text/plain, exact body, TLS 1.3)")
def t_curl_good(w):
    p = curl(w, "good.test", "-D", "-", "-w", "\n%{ssl_verify_result} %{http_version}")
    check(p.returncode == 0, p.stderr)
    check(p.stdout.startswith("HTTP/1.1 200"), p.stdout)
    check(re.search(r"(?im)^content-type: text/plain\r?$", p.stdout), p.stdout)
    check(GOOD_POLICY in p.stdout.replace("\r", ""), p.stdout)
    r = w.requests("good.test")[-1]
    check(r["status"] == 200 and r["tls"] == "TLSv1.3" and r["sni"] == "mta-sts.good.test", r)


@test("HTTPS: Python ssl (no CN fallback) fetches the good policy")
def t_py_good(w):
    status, headers, body = w.https_get("good.test")
    check(status == 200 and body == GOOD_POLICY.encode() and headers["content-type"] == "text/plain")


def _bad_cert_test(kind):
    py_msg, curl_msg = BAD_CERTS[kind]

    def fn(w):
        d = cert_domain(kind)
        try:
            w.https_get(d)
            raise AssertionError("Python ssl accepted it")
        except ssl.SSLCertVerificationError as e:
            check(re.search(py_msg, str(e)), f"python: {e}")
        p = curl(w, d)
        if p is not None:
            first = p.stderr.strip().splitlines()[0] if p.stderr.strip() else ""
            check(p.returncode == 60 and re.search(curl_msg, first), f"curl rc={p.returncode} {first}")
            return first
    return fn


for _kind in BAD_CERTS:
    test(f"HTTPS: cert={_kind} fails verification with the expected error")(_bad_cert_test(_kind))


@test("HTTPS: cert=cn-only (name only in CN) fails without CN fallback; note what curl does")
def t_cn_only(w):
    try:
        w.https_get("cnonly.test")
        raise AssertionError("Python ssl without CN fallback accepted a CN-only certificate")
    except ssl.SSLCertVerificationError as e:
        check("Hostname mismatch" in str(e), str(e))
    status, _, _ = w.https_get("cnonly.test", check_common_name=True)
    check(status == 200)
    p = curl(w, "cnonly.test")
    return ("curl 7.88 ACCEPTS it (CN fallback): the daemon must refuse CN-only itself"
            if p.returncode == 0 else f"curl refuses it: rc={p.returncode}")


@test("HTTPS: cert=wildcard (*.<domain>) is accepted")
def t_wildcard(w):
    check(w.https_get("wildcard.test")[0] == 200)
    check(curl(w, "wildcard.test").returncode == 0)


@test("HTTPS: TLS 1.2 and 1.3 accepted, TLS 1.1 refused by the server")
def t_tls_versions(w):
    check(curl(w, "good.test", "--tlsv1.3").returncode == 0)
    p = curl(w, "good.test", "--tls-max", "1.2", "-w", "%{http_code}", "-o", "/dev/null")
    check(p.returncode == 0 and p.stdout == "200", p.stderr)
    check(w.requests("good.test")[-1]["tls"] == "TLSv1.2")
    if not OPENSSL:
        raise Skip("openssl not installed")
    p = run([OPENSSL, "s_client", "-connect", "127.0.0.1:443", "-servername", "mta-sts.good.test",
             "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"])
    check(p.returncode != 0 and "alert protocol version" in p.stderr, p.stderr[-300:])


@test("HTTPS: policy=None gives 404")
def t_404(w):
    check(w.https_get("nopolicy.test")[0] == 404)


@test("HTTPS: status=500 and status=201 are served with the policy as body")
def t_status(w):
    s, _, body = w.https_get("e500.test")
    check(s == 500 and body.startswith(b"version: STSv1"), (s, body))
    s, h, body = w.https_get("e201.test")
    check(s == 201 and body.startswith(b"version: STSv1") and h["content-type"] == "text/plain", (s, h))


@test("HTTPS: redirect_to gives 301 + Location; curl does not follow; target not fetched")
def t_redirect(w):
    before = w.request_count("target.test")
    p = curl(w, "redir.test", "-D", "-", "-o", "/dev/null")
    check(p.returncode == 0 and p.stdout.startswith("HTTP/1.1 301"), p.stdout)
    check("location: https://mta-sts.target.test/.well-known/mta-sts.txt" in p.stdout.lower(), p.stdout)
    check(w.request_count("target.test") == before)


@test("HTTPS: content_type='text/html' and content_type=None (no header)")
def t_content_type(w):
    check(w.https_get("html.test")[1]["content-type"] == "text/html")
    check("content-type" not in w.https_get("noct.test")[1])


@test("HTTPS: body_bytes gives exactly 65536 and 65537 bytes (a valid policy plus pad: lines)")
def t_sizes(w):
    for d, n in (("size64k.test", 65536), ("size64k1.test", 65537)):
        s, h, body = w.https_get(d)
        check(s == 200 and len(body) == n and h["content-length"] == str(n), (d, len(body)))
        check(body.startswith(b"version: STSv1\nmode: enforce\nmx: mx1.") and b"pad: " in body)


@test("HTTPS: stall=True drips (headers at once, then ~1 byte/s): curl --max-time 2 times out")
def t_drip(w):
    p = curl(w, "drip.test", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", max_time=2)
    code, size = p.stdout.split()
    check(p.returncode == 28 and code == "200" and 0 < int(size) < 2000, (p.returncode, p.stdout))
    return f"received {size} of 16384 bytes in 2 s"


@test("HTTPS: stall='headers' (Python server): headers arrive, the body never does")
def t_headers_stall(w):
    p = curl(w, "hdrstall.test", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", max_time=1.5)
    check(p.returncode == 28 and p.stdout == "200 0", (p.returncode, p.stdout))


@test("HTTPS: stall='handshake': the ServerHello never comes; the handshake is counted")
def t_handshake_stall(w):
    w.reset_counts()
    t0 = time.monotonic()
    try:
        w.https_get("hsstall.test", timeout=1.0)
        raise AssertionError("handshake completed")
    except (socket.timeout, TimeoutError):
        pass
    check(time.monotonic() - t0 < 3)
    check(w.handshake_count("hsstall.test") == 1 and w.request_count("hsstall.test") == 0)


@test("HTTPS: truncate=True / 'chunked': early EOF, curl exit 18")
def t_truncate(w):
    for d in ("trunc.test", "chunked.test"):
        p = curl(w, d)
        check(p.returncode == 18, f"{d}: rc={p.returncode} {p.stderr}")


@test("HTTPS: no server at the domain's address: connection refused (curl exit 7)")
def t_refused(w):
    p = curl(w, "down.test")
    check(p.returncode == 7, p.stderr)
    check(w.dns_query("mta-sts.down.test", "A").rrs("A")[0].value == "127.0.0.9")


@test("HTTPS: server='python' serves a normal policy and counts handshakes")
def t_python_server(w):
    w.reset_counts()
    s, h, body = w.https_get("py.test")
    check(s == 200 and body.startswith(b"version: STSv1") and h["content-type"] == "text/plain")
    check(w.handshake_count("py.test") == 1 and w.request_count("py.test") == 1)
    check(w.dns_query("mta-sts.py.test", "A").rrs("A")[0].value == "127.0.0.2")


@test("HTTPS: over IPv6 (::1) when available")
def t_ipv6(w):
    if not w.ipv6:
        raise Skip("no IPv6 on loopback")
    check(w.dns_query("mta-sts.v6.test", "AAAA").rrs("AAAA")[0].value == "::1")
    check(w.https_get("v6.test", address="::1")[0] == 200)


@test("counting: request_count increments per fetch, reset_counts() zeroes, SNI and Host logged")
def t_counts(w):
    w.reset_counts()
    check(w.request_count("counted.test") == 0)
    w.https_get("counted.test")
    curl(w, "counted.test", "-o", "/dev/null")
    check(w.wait_request_count("counted.test", 2, timeout=2) == 2)
    entries = w.requests("counted.test")
    check(all(e["sni"] == e["host"] == "mta-sts.counted.test" for e in entries), entries)
    check(all(e["uri"] == "/.well-known/mta-sts.txt" and e["status"] == 200 for e in entries))
    check(w.request_count("good.test") == 0)
    w.reset_counts()
    check(w.request_count("counted.test") == 0)


@test("runtime: set_policy rewrites the body without reloading nginx")
def t_set_policy(w):
    gen = w.nginx.gen
    w.set_policy("edit.test", "version: STSv1\nmode: testing\nmx: *.edit.test\nmax_age: 600\n")
    s, _, body = w.https_get("edit.test")
    check(s == 200 and b"mode: testing" in body and w.nginx.gen == gen)
    w.set_policy("edit.test", None)
    check(w.https_get("edit.test")[0] == 404)


@test("runtime: add_domain after start and update_domain (status, cert) reload unbound and nginx")
def t_runtime_add(w):
    t0 = time.monotonic()
    w.add_domain("late.test", txt=["v=STSv1; id=late"])
    took = time.monotonic() - t0
    check(w.dns_query("_mta-sts.late.test", "TXT").txt() == ["v=STSv1; id=late"])
    check(w.https_get("late.test")[0] == 200)
    w.update_domain("late.test", status=404)
    check(w.https_get("late.test")[0] == 404)
    w.update_domain("late.test", status=200, cert="expired")
    try:
        w.https_get("late.test")
        raise AssertionError("expired cert accepted")
    except ssl.SSLCertVerificationError:
        pass
    check(w.dns_query("_mta-sts.late.test", "TXT").txt() == ["v=STSv1; id=late"])
    return f"add_domain at runtime took {took:.2f}s"


@test("runtime: batch() applies several changes at once; remove_domain; nested zone; set_records")
def t_runtime_misc(w):
    gen = w.nginx.gen
    with w.batch():
        w.add_domain("b1.test", tlsrpt="v=TLSRPTv1; rua=mailto:tlsrpt@b1.test")
        w.add_domain("sub.good.test", txt=["v=STSv1; id=sub"], neg_ttl=5)
        w.set_records("_smtp._tls.good.test", "TXT", [W.txt_rdata("v=TLSRPTv1; rua=mailto:x@good.test")])
    check(w.nginx.gen == gen + 1, f"{w.nginx.gen - gen} nginx reloads for one batch")
    check(w.dns_query("_smtp._tls.b1.test", "TXT").txt() == ["v=TLSRPTv1; rua=mailto:tlsrpt@b1.test"])
    check(w.dns_query("_smtp._tls.good.test", "TXT").txt() == ["v=TLSRPTv1; rua=mailto:x@good.test"])
    check(w.dns_query("_mta-sts.sub.good.test", "TXT").txt() == ["v=STSv1; id=sub"])
    r = w.dns_query("nothing.sub.good.test", "TXT")
    check(r.rcode_name == "NXDOMAIN" and r.soa().name == "sub.good.test." and r.soa().ttl == 5, r)
    check(w.https_get("sub.good.test")[0] == 200)
    check(w.dns_query("_mta-sts.good.test", "TXT").txt() == ["v=STSv1; id=1;"])
    w.remove_domain("b1.test")
    check(w.dns_query("_smtp._tls.b1.test", "TXT").rcode_name == "NXDOMAIN")
    check(w.dns_query("b1.test", "MX").soa().name == ".", "b1.test still has a zone")
    w.set_records("_smtp._tls.good.test", "TXT", [])
    check(w.dns_query("_smtp._tls.good.test", "TXT").rcode_name == "NXDOMAIN")


@test("HTTPS: Python server: stall='drip' with server='python', truncate='eof' (no close_notify)")
def t_python_variants(w):
    w.add_domain("pydrip.test", stall="drip", server="python")
    w.add_domain("eof.test", truncate="eof")
    p = curl(w, "pydrip.test", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", max_time=1.5)
    code, size = p.stdout.split()
    check(p.returncode == 28 and code == "200" and 1 <= int(size) <= 3, (p.returncode, p.stdout))
    p = curl(w, "eof.test")
    check(p.returncode in (18, 56), f"rc={p.returncode} {p.stderr}")
    return f"eof: curl rc={p.returncode}"


# ---- SMTP: the private Postfix for add_mx_server() ------------------------------------------------

def smtp_session(address, host, ctx=None):
    """Banner, EHLO, and (with ctx) STARTTLS verified for host, as a sender would; then QUIT.
    Returns (banner, EHLO offered STARTTLS, STARTTLS reply code, peer certificate or None)."""
    s = smtplib.SMTP(timeout=5)
    try:
        _code, banner = s.connect(address, 25)
        s.ehlo("selftest.invalid")
        offered, cert, code = s.has_extn("starttls"), None, None
        if ctx is not None:
            code, _ = s.docmd("STARTTLS")
            if code == 220:
                s.sock = ctx.wrap_socket(s.sock, server_hostname=host)
                s.file = None
                cert = s.sock.getpeercert()
                s.ehlo("selftest.invalid")
        s.quit()
        return banner.decode(), offered, code, cert
    finally:
        s.close()


@test("SMTP: add_mx_server() is a real Postfix smtpd: its banner, STARTTLS with the host's "
      "certificate (world CA), or no STARTTLS; A record set; handshakes in the maillog")
def t_mx_servers(w):
    t0 = time.monotonic()
    w.add_mx_server("mx1.smtp.test", "127.0.0.21")
    took = time.monotonic() - t0
    w.add_mx_server("plain.smtp.test", "127.0.0.22", starttls=False)
    STATE["wrong_mx"] = w.add_mx_server("wrong.smtp.test", "127.0.0.23", cert="wrong-name")
    ctx = ssl.create_default_context(cafile=w.ca_file)
    banner, offered, code, cert = smtp_session("127.0.0.21", "mx1.smtp.test", ctx)
    check(banner == "mx1.smtp.test ESMTP Postfix" and offered and code == 220,
          (banner, offered, code))
    check(cert["subjectAltName"] == (("DNS", "mx1.smtp.test"),), cert)
    check("intermediate" in str(cert["issuer"]), cert["issuer"])
    check(w.dns_query("mx1.smtp.test", "A").rrs("A")[0].value == "127.0.0.21")
    banner, offered, code, cert = smtp_session("127.0.0.22", "plain.smtp.test", ctx)
    check(banner == "plain.smtp.test ESMTP Postfix" and not offered and code != 220,
          (banner, offered, code))
    try:
        smtp_session("127.0.0.23", "wrong.smtp.test", ctx)
        raise AssertionError("the wrong-name certificate was accepted")
    except ssl.SSLCertVerificationError as e:
        check("Hostname mismatch" in str(e), e)
    log = w.mx.log_text()
    check("TLS connection established from" in log and "postfix/smtpd" in log, log[-2000:])
    return f"first add_mx_server (Postfix start) took {took:.2f}s"


@test("SMTP: MxServer.stop() removes the service (port refused); one server per address:port")
def t_mx_stop(w):
    srv = STATE["wrong_mx"]
    srv.stop()
    check(not W.tcp_accepts("127.0.0.23", 25), "127.0.0.23:25 still accepts")
    check(W.smtp_greeting("127.0.0.21", 25, starttls=True) == "mx1.smtp.test ESMTP Postfix")
    try:
        w.add_mx_server("again.smtp.test", "127.0.0.21")
        raise AssertionError("a second server on 127.0.0.21:25 was accepted")
    except ValueError:
        pass


# ---- socketmap and postmap ------------------------------------------------------------------------

@test("daemon(): starts a stand-in with `-f -c <config>`, ready when its port accepts")
def t_daemon(w):
    t0 = time.monotonic()
    d = w.daemon("# fixed stand-in\nlisten = 127.0.0.1:8461\n", binary=FIXED, name="fixed")
    STATE["fixed"] = d
    check(d.alive() and W.tcp_accepts("127.0.0.1", 8461))
    STATE["notfound"] = w.daemon("listen = 127.0.0.1:8462\n", name="fixed-notfound",
                                 listen=("127.0.0.1", 8462),
                                 cmd=[sys.executable, FIXED, "-f", "-c", "{config}", "--notfound"])
    return f"ready in {time.monotonic() - t0:.2f}s"


@test("postmap -q against the stand-in: OK answer (exit 0, the policy on stdout)")
def t_postmap_ok(w):
    r = w.postmap_query("example.com", "socketmap:inet:127.0.0.1:8461:postfix")
    check(r == (0, "secure match=example.com servername=hostname\n"), (r, r.stderr))


@test("postmap -q against a NOTFOUND stand-in: exit 1, nothing on stdout")
def t_postmap_notfound(w):
    r = w.postmap_query("example.com", "socketmap:inet:127.0.0.1:8462:postfix")
    check(r.rc == 1 and r.out == "", (r, r.stderr))


@test("socketmap_query: raw netstring client; leading zeros accepted")
def t_socketmap_query(w):
    check(w.socketmap_query("127.0.0.1", 8461, "postfix", "example.com") ==
          "OK secure match=example.com servername=hostname")
    data, _ = w.socketmap_raw("127.0.0.1", 8461, b"0019:postfix example.com,", timeout=0.5)
    check(data == W.netstring(b"OK secure match=example.com servername=hostname"), data)


@test("socketmap: 1000 pipelined requests in one write get 1000 replies in order")
def t_pipeline(w):
    with W.SocketmapClient("127.0.0.1", 8461) as c:
        replies = c.pipeline([("postfix", f"d{i}.test") for i in range(1000)])
    check(len(replies) == 1000 and set(replies) == {"OK secure match=example.com servername=hostname"})


@test("socketmap: malformed netstrings (non-digit, bad terminator, oversize) close the connection")
def t_malformed(w):
    for bad in (b"abc:postfix x,", b"5:hello!", b"99999999:", b":x,"):
        data, closed = w.socketmap_raw("127.0.0.1", 8461, bad, timeout=1.0)
        check(closed and data == b"", (bad, data, closed))


@test("socketmap: 200 concurrent connections all answered")
def t_concurrent(w):
    socks = [socket.create_connection(("127.0.0.1", 8461), timeout=5) for _ in range(200)]
    try:
        for i, s in enumerate(socks):
            s.sendall(W.netstring(f"postfix c{i}.test"))
        want = W.netstring(b"OK secure match=example.com servername=hostname")
        for s in socks:
            got = b""
            while len(got) < len(want):
                chunk = s.recv(4096)
                check(chunk, "connection closed early")
                got += chunk
            check(got == want, got)
    finally:
        for s in socks:
            s.close()


@test("daemon(): a unix-socket listener; postmap -q socketmap:unix:")
def t_daemon_unix(w):
    path = str(w.workdir / "fixed.sock")
    d = w.daemon(f"listen = {path}\n", binary=FIXED, name="fixed-unix", listen=path)
    r = w.postmap_query("example.com", f"socketmap:unix:{path}:postfix")
    check(r == (0, "secure match=example.com servername=hostname\n"), (r, r.stderr))
    d.stop()
    check(not d.alive() and d.returncode == 0, d.returncode)


@test("daemon(): a busy port, a process that exits, or one that never listens: RuntimeError, bounded")
def t_daemon_failures(w):
    try:
        w.daemon("x\n", name="clash")   # 8461 is taken by the stand-in
        raise AssertionError("no exception")
    except RuntimeError as e:
        check("already accepts" in str(e), str(e))
    try:
        w.daemon("x\n", cmd=["/bin/sh", "-c", "echo boom-from-daemon >&2; exit 3"], name="failing",
                 listen=("127.0.0.1", 8498), ready_timeout=5)
        raise AssertionError("no exception")
    except RuntimeError as e:
        check("boom-from-daemon" in str(e) and "status 3" in str(e), str(e))
    t0 = time.monotonic()
    try:
        w.daemon("x\n", cmd=["sleep", "30"], name="silent", listen=("127.0.0.1", 8499), ready_timeout=0.5)
        raise AssertionError("no exception")
    except RuntimeError as e:
        check("not ready" in str(e), str(e))
    check(time.monotonic() - t0 < 3)
    silent = [d for d in w.daemons if d.name == "silent"][0]
    check(not silent.alive(), "the not-ready process was left running")


# ---- teardown -------------------------------------------------------------------------------------

@test("stop(): every process ends (by PID), ports are free again, logs stay in the workdir")
def t_stop(w):
    postfix = w.mx._pids() if w.mx is not None else []
    check(len(postfix) >= 3, f"Postfix processes: {postfix} (master, postlogd, smtpd, ...)")
    pids = [w.dns.proc.pid, w.nginx.proc.pid] + W._child_pids(w.nginx.proc.pid) + \
        [d.pid for d in w.daemons] + postfix
    t0 = time.monotonic()
    w.stop()
    took = time.monotonic() - t0
    alive = [p for p in pids if W._pid_alive(p)]
    check(not alive, f"still alive: {alive}")
    for family, kind, addr in ((socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 53)),
                               (socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 443)),
                               (socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.2", 443)),
                               (socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.21", 25)),
                               (socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 8461))):
        s = socket.socket(family, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr)
        s.close()
    for f in ("world.log", "dns/unbound.log", "https/access.log", "https/error.log", "fixed.log",
              "mx/maillog"):
        check((w.workdir / f).exists(), f"{f} missing")
    check(took < 10, f"stop took {took:.1f}s")
    return f"stopped {len(pids)} processes in {took:.2f}s"


def main():
    t_start = time.monotonic()
    workdir = os.environ.get("WORLD_WORKDIR") or tempfile.mkdtemp(prefix="mtasts-world-selftest.")

    def watchdog(_sig, _frm):
        raise TimeoutError(f"watchdog: self-test exceeded {WATCHDOG_SECONDS}s")
    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(WATCHDOG_SECONDS)

    print(f"1..{len(TESTS)}", flush=True)
    print(f"# workdir {workdir}", flush=True)
    failed = 0
    w = None
    try:
        w = build_world(workdir)
        t0 = time.monotonic()
        w.start()
        STATE["start_seconds"] = time.monotonic() - t0
    except BaseException:
        print("Bail out! world did not start", flush=True)
        traceback.print_exc(file=sys.stdout)
        if w is not None:
            w.stop()
        print(f"# logs left in {workdir}")
        return 1
    try:
        for n, (desc, fn) in enumerate(TESTS, 1):
            t0 = time.monotonic()
            try:
                diag = fn(w)
                print(f"ok {n} - {desc}", flush=True)
                if diag:
                    print(f"#   {diag}")
            except Skip as e:
                print(f"ok {n} - {desc} # SKIP {e}", flush=True)
            except BaseException as e:   # noqa: B902 - a test may raise anything, even the watchdog
                failed += 1
                print(f"not ok {n} - {desc}", flush=True)
                for line in traceback.format_exception(e)[-6:]:
                    for sub in line.rstrip().splitlines():
                        print(f"#   {sub}")
                if isinstance(e, (KeyboardInterrupt, TimeoutError)) and "watchdog" in str(e):
                    print("Bail out! watchdog")
                    break
            finally:
                if time.monotonic() - t0 > 1:
                    print(f"#   (took {time.monotonic() - t0:.1f}s)")
    finally:
        signal.alarm(0)
        w.stop()
    total = time.monotonic() - t_start
    print(f"# {len(TESTS) - failed}/{len(TESTS)} passed in {total:.1f}s")
    if failed or os.environ.get("KEEP_WORLD") or os.environ.get("WORLD_WORKDIR"):
        print(f"# logs left in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
