#!/usr/bin/env python3
"""test_ctl.py: mtasts-ctl against a running mtastsd in the real test world (control issue)."""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "world"))

import taplib  # noqa: E402

taplib.enter_netns()

from world import World  # noqa: E402

CTL = os.environ.get("MTASTS_CTL") or str(taplib.TOP_SRCDIR / "build" / "mtasts-ctl")
SM = "socketmap:inet:127.0.0.1:8461:postfix"

CONFIG = """
listen = ( { protocol = "socketmap"; address = "127.0.0.1:8461"; }%(extra)s );
maps = ( { name = "postfix"; } );
daemon: { runtime_dir = "%(rundir)s"; allow_root = true; };
dns: { servers = ["%(dns)s"]; timeout = 500; max_ttl = 1; negative_ttl = 1; };
fetch: { timeout = 3000; ca_file = "%(ca)s"; };
cache: { recheck_interval = 1; };
sqlite: { path = "%(rundir)s/cache.db"; write_interval = 100; };
control: { socket = "%(rundir)s/control.sock"; mode = "%(mode)s"; };
"""


def config(ctx, extra="", mode="0666", broken=""):
    return CONFIG % dict(extra=extra, rundir=ctx["rundir"], dns=ctx["w"].dns_server,
                         ca=ctx["w"].ca_file, mode=mode) + broken


def ctl(ctx, *args, user=None, sock=True, timeout=30):
    argv = [CTL] + (["-s", ctx["sock"]] if sock else []) + list(args)
    if user:
        argv = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups"] + argv
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def ctl_json(ctx, *args):
    rc, out, err = ctl(ctx, "--json", *args)
    assert rc == 0, (args, rc, out, err)
    return json.loads(out)


def setup():
    if not Path(CTL).exists():
        raise RuntimeError(f"{CTL} not built")
    w = World()
    w.start()
    # A directory anyone may traverse, so that the credentials check (not the file system)
    # is what refuses an unauthorised user.
    rundir = tempfile.mkdtemp(prefix="mtasts-ctl-")
    os.chmod(rundir, 0o755)
    ctx = dict(w=w, rundir=rundir, sock=f"{rundir}/control.sock")
    with w.batch():
        for d in ("a.test", "b.test", "flush.test", "refresh.test"):
            w.add_domain(d, txt_ttl=1)
        w.add_domain("t.test", policy="version: STSv1\nmode: testing\nmx: mx1.t.test\n"
                     "max_age: 600\n")
    ctx["conf_text"] = config(ctx)
    ctx["d"] = w.daemon(ctx["conf_text"])
    for d in ("a.test", "b.test", "t.test"):
        w.postmap_query(d, SM)
    return ctx


def teardown(ctx):
    if ctx:
        ctx["w"].stop()


T = taplib.test


@T("status: text and JSON (version, listeners, maps, cache)")
def _(ctx):
    rc, out, _ = ctl(ctx, "status")
    assert rc == 0 and "mtastsd" in out and "127.0.0.1:8461" in out, out
    j = ctl_json(ctx, "status")
    assert j["pid"] == ctx["d"].pid and j["maps"] == ["postfix"], j
    assert [x["address"] for x in j["listeners"]] == ["127.0.0.1:8461"], j
    assert j["cache"]["entries"] >= 3, j


@T("stats: JSON counters reflect the lookups made")
def _(ctx):
    j = ctl_json(ctx, "stats")
    assert j["lookups"]["secure"] >= 2 and j["lookups"]["notfound"] >= 1, j
    assert j["discoveries"]["fetched"] >= 3, j
    assert j["fetch"]["requests"] >= 3 and j["connections"]["accepted"] >= 3, j
    assert j["limits"] == {"max_connections": 0, "max_connections_per_ip": 0,
                           "cache_full": 0}, j
    assert j["discoveries"]["fail_http_4xx"] == 0, j


@T("list: every cached policy; --mode and --expiring filter")
def _(ctx):
    pol = {p["domain"]: p for p in ctl_json(ctx, "list")["policies"]}
    assert {"a.test", "b.test", "t.test"} <= set(pol), pol
    assert pol["a.test"]["mode"] == "enforce" and pol["a.test"]["mx"] == ["mx1.a.test"]
    assert pol["a.test"]["id"] == "1" and pol["a.test"]["expires_at"] > time.time()
    modes = {p["domain"] for p in ctl_json(ctx, "list", "--mode", "testing")["policies"]}
    assert modes == {"t.test"}, modes
    soon = {p["domain"] for p in ctl_json(ctx, "list", "--expiring", "3600")["policies"]}
    assert soon == {"t.test"}, soon
    rc, out, _ = ctl(ctx, "list")
    assert rc == 0 and "a.test" in out and "enforce" in out


@T("show: policy verbatim, TXT verdict, last fetch with certificate, Postfix's answer")
def _(ctx):
    j = ctl_json(ctx, "show", "A.Test.")
    assert j["domain"] == "a.test"
    assert j["policy"]["text"] == "version: STSv1\nmode: enforce\nmx: mx1.a.test\nmax_age: 86400\n"
    assert j["txt"]["state"] == "match"
    assert j["txt_record"] == "v=STSv1; id=1;" and j["txt_seen_at"] > 0, j
    f = j["last_fetch"]
    assert f["http_status"] == 200 and f["content_type"] == "text/plain", f
    assert "mta-sts.a.test" in f["cert_subject"] and f["cert_issuer"] and f["cert_not_after"], f
    rc, out = ctx["w"].postmap_query("a.test", SM)
    assert j["answers"]["postfix"] == "OK " + out.strip(), (j["answers"], out)
    rc, out, err = ctl(ctx, "show", "nothere.test")
    assert rc == 1 and "not in the cache" in err, (rc, out, err)


@T("flush DOMAIN: the next lookup fetches again; flush --all empties the cache")
def _(ctx):
    w = ctx["w"]
    w.postmap_query("flush.test", SM)
    assert w.request_count("flush.test") == 1
    rc, out, _ = ctl(ctx, "flush", "flush.test")
    assert rc == 0 and "flushed 1" in out, out
    assert w.postmap_query("flush.test", SM)[0] == 0
    assert w.wait_request_count("flush.test", 2) == 2
    rc, out, _ = ctl(ctx, "flush", "--all")
    assert rc == 0 and ctl_json(ctx, "list")["policies"] == [], out
    assert ctl_json(ctx, "status")["cache"]["entries"] == 0
    for d in ("a.test", "b.test", "t.test"):
        w.postmap_query(d, SM)


@T("refresh: fetches now even with an unchanged id and picks up a changed policy")
def _(ctx):
    w = ctx["w"]
    assert w.postmap_query("refresh.test", SM)[1].strip().endswith(
        "match=mx1.refresh.test servername=hostname")
    w.set_policy("refresh.test", "version: STSv1\nmode: enforce\nmx: mx2.refresh.test\n"
                 "max_age: 86400\n")
    j = ctl_json(ctx, "refresh", "refresh.test")
    assert j["policy"]["mx"] == ["mx2.refresh.test"], j
    rc, out = w.postmap_query("refresh.test", SM)
    assert out.strip() == "secure match=mx2.refresh.test servername=hostname", out


@T("log-level: changed at run time; a bad level is a usage error")
def _(ctx):
    rc, out, _ = ctl(ctx, "log-level", "debug")
    assert rc == 0, out
    ctx["w"].postmap_query("b.test", SM)
    assert "lookup domain=b.test" in ctx["d"].log_text()
    assert ctl(ctx, "log-level", "info")[0] == 0
    assert ctl(ctx, "log-level", "loud")[0] == 2


@T("reload with a broken config: exit 1, file:line in the reason, old config keeps serving")
def _(ctx):
    conf = Path(ctx["d"].config_path)
    good = conf.read_text()
    conf.write_text(good + "\nlimits: { idle_timeout = 5; };\n")
    try:
        rc, out, err = ctl(ctx, "reload")
        assert rc == 1, (rc, out, err)
        assert f"{conf}:" in err and "idle_timeout" in err, err
        assert ctx["w"].postmap_query("a.test", SM)[0] == 0
        assert ctl(ctx, "status")[0] == 0
    finally:
        conf.write_text(good)


@T("reload adding a tcp_table listener; cache kept; removing it again")
def _(ctx):
    w, conf = ctx["w"], Path(ctx["d"].config_path)
    good = conf.read_text()
    before = w.request_count("a.test")
    conf.write_text(config(ctx, extra=',\n { protocol = "tcp_table"; address = "127.0.0.1:8462";'
                           ' map = "postfix"; }'))
    rc, out, err = ctl(ctx, "reload")
    assert rc == 0 and "cache kept" in out, (rc, out, err)
    rc, out = w.postmap_query("a.test", "tcp:127.0.0.1:8462")
    assert (rc, out.strip()) == (0, "secure match=mx1.a.test servername=hostname"), (rc, out)
    assert w.request_count("a.test") == before, "the cache was not kept"
    conf.write_text(good)
    assert ctl(ctx, "reload")[0] == 0
    j = ctl_json(ctx, "status")
    assert [x["address"] for x in j["listeners"]] == ["127.0.0.1:8461"], j


@T("SIGHUP reloads like mtasts-ctl reload")
def _(ctx):
    import signal
    ctx["d"].signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "SIGHUP: reloading" not in ctx["d"].log_text() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    assert "reload result=ok" in ctx["d"].log_text().split("SIGHUP: reloading")[-1]


@T("an unauthorised user (nobody) is refused by credentials: exit 1, permission denied")
def _(ctx):
    rc, out, err = ctl(ctx, "status", user="nobody")
    assert rc == 1 and "permission denied" in (out + err).lower(), (rc, out, err)
    assert "control result=denied" in ctx["d"].log_text()


@T("a socket the user may not open: exit 3 (not reachable)")
def _(ctx):
    os.chmod(ctx["sock"], 0o660)
    try:
        rc, out, err = ctl(ctx, "status", user="nobody")
        assert rc == 3, (rc, out, err)
    finally:
        os.chmod(ctx["sock"], 0o666)


@T("protocol errors and unknown commands: ERR replies, never a crash")
def _(ctx):
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.connect(ctx["sock"])
    s.sendall(b"MTASTS/1 show\nMTASTS/1 nosuch\nHELLO\n" + b"x" * 5000 + b"\n")
    s.settimeout(3)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    assert data.count(b"ERR ") == 3, data
    assert ctl(ctx, "status")[0] == 0


@T("daemon not running: exit 3")
def _(ctx):
    ctx["d"].stop()
    rc, out, err = ctl(ctx, "status")
    assert rc == 3, (rc, out, err)


taplib.run(setup, teardown)
