#!/usr/bin/env python3
"""test_privileges.py: mtastsd refuses to keep root, and the privileges it drops stay dropped
(production issue), against the real test world and postmap."""

import os
import pwd
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "world"))

import taplib  # noqa: E402

taplib.enter_netns()

import world as W  # noqa: E402
from world import World  # noqa: E402

SM = "socketmap:inet:127.0.0.1:8461:postfix"

CONFIG = """
listen = ( { protocol = "socketmap"; address = "127.0.0.1:8461"; } );
daemon: { runtime_dir = "%(dir)s/run"; %(daemon)s };
dns: { servers = ["%(dns)s"]; };
fetch: { ca_file = "%(ca)s"; };
sqlite: { path = "%(dir)s/state/cache.db"; write_interval = 100; };
control: { socket = "%(dir)s/run/control.sock"; };
"""


def config(ctx, daemon):
    return CONFIG % dict(dir=ctx["dir"], daemon=daemon, dns=ctx["w"].dns_server,
                         ca=ctx["w"].ca_file)


def status_fields(pid):
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.split()
    return out


def setup():
    w = World()
    w.start()
    w.add_domain("priv.test")
    # World's workdir is private to root; the daemon's own files go where nobody can reach them.
    d = tempfile.mkdtemp(prefix="mtasts-privs-")
    os.chmod(d, 0o755)
    return dict(w=w, dir=d)


def teardown(ctx):
    if ctx:
        ctx["w"].stop()


T = taplib.test


@T("started as root without daemon.user: refuses to run, says what to set")
def _(ctx):
    r = subprocess.run([W.default_daemon_binary(), "-f", "-c", "/dev/stdin"],
                       input=config(ctx, ""), capture_output=True, text=True, timeout=20)
    assert r.returncode == 1, r
    assert "refusing to run as root" in r.stderr and "daemon.user" in r.stderr, r.stderr


@T("daemon.user = nobody: every uid/gid is nobody's, no other groups, no capabilities, and it works")
def _(ctx):
    w = ctx["w"]
    nobody = pwd.getpwnam("nobody")
    d = w.daemon(config(ctx, 'user = "nobody";'), name="privs")
    st = status_fields(d.pid)
    assert st["Uid"] == [str(nobody.pw_uid)] * 4, st["Uid"]
    assert st["Gid"] == [str(nobody.pw_gid)] * 4, st["Gid"]
    # Supplementary groups: only its own group (setgroups(1, &gid)); root's are gone.
    assert st.get("Groups", []) == [str(nobody.pw_gid)], st.get("Groups")
    for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(st[cap][0], 16) == 0, (cap, st[cap])
    # It still does its job as nobody: fetch, answer, and write its cache file.
    rc, out = w.postmap_query("priv.test", SM)
    assert (rc, out) == (0, "secure match=mx1.priv.test servername=hostname\n"), (rc, out)
    db = Path(ctx["dir"]) / "state" / "cache.db"
    W.wait_until(lambda: db.exists(), 5, what="the cache file")
    assert db.stat().st_uid == nobody.pw_uid, db.stat()
    assert "privileges dropped to user=nobody" in d.log_text()
    d.stop()
    assert d.returncode == 0, d.log_text()[-2000:]


@T("daemon.allow_root = true: runs as root when told to, and says so")
def _(ctx):
    d = ctx["w"].daemon(config(ctx, "allow_root = true;"), name="root")
    assert status_fields(d.pid)["Uid"][0] == "0"
    assert "running as root (daemon.allow_root = true)" in d.log_text()
    d.stop()
    assert d.returncode == 0


taplib.run(setup, teardown)
