#!/usr/bin/env python3
"""test_systemd.py: what systemd sees of mtastsd (production issue): sd_notify readiness,
reload and stop, socket activation with inherited listeners, and priorities in the journal.
The systemd side is played by the real systemd-socket-activate and by a notify socket the test
binds itself, exactly as systemd would; queries go through postmap."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "world"))

import taplib  # noqa: E402

taplib.enter_netns()

import world as W  # noqa: E402
from world import World  # noqa: E402

CONFIG = """
listen = ( { protocol = "socketmap"; address = "127.0.0.1:8461"; },
           { protocol = "socketmap"; address = "unix:%(dir)s/sm.sock"; } );
daemon: { runtime_dir = "%(dir)s"; allow_root = true; };
dns: { servers = ["%(dns)s"]; };
fetch: { ca_file = "%(ca)s"; };
cache: { backend = "memory"; };
control: { socket = ""; };
"""


def setup():
    w = World()
    w.start()
    w.add_domain("sd.test")
    d = tempfile.mkdtemp(prefix="mtasts-sd-")
    conf = Path(d) / "mtastsd.conf"
    conf.write_text(CONFIG % dict(dir=d, dns=w.dns_server, ca=w.ca_file))
    return dict(w=w, dir=d, conf=str(conf))


def teardown(ctx):
    if ctx:
        ctx["w"].stop()
        shutil.rmtree(ctx["dir"], ignore_errors=True)


T = taplib.test


class NotifySocket:
    """The datagram socket systemd listens on for sd_notify() messages."""

    def __init__(self, path):
        self.path = path
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.bind(path)

    def next(self, timeout=10):
        self.s.settimeout(timeout)
        return self.s.recv(4096).decode()

    def close(self):
        self.s.close()
        os.unlink(self.path)


def expect(secure_for, spec):
    rc, out = secure_for.postmap_query("sd.test", spec)
    assert (rc, out) == (0, "secure match=mx1.sd.test servername=hostname\n"), (rc, out)


@T("Type=notify: READY=1 with a STATUS line once serving; RELOADING/READY on SIGHUP; STOPPING")
def _(ctx):
    ns = NotifySocket(f"{ctx['dir']}/notify.sock")
    log = open(f"{ctx['dir']}/notify.log", "w")
    p = subprocess.Popen([W.default_daemon_binary(), "-f", "-c", ctx["conf"]], stderr=log,
                         env=dict(os.environ, NOTIFY_SOCKET=ns.path))
    try:
        msg = ns.next()
        assert msg.startswith("READY=1\nSTATUS=serving: 2 listeners"), msg
        # Ready means ready: the listener answers right away.
        expect(ctx["w"], "socketmap:inet:127.0.0.1:8461:postfix")
        p.send_signal(signal.SIGHUP)
        assert ns.next() == "RELOADING=1"
        msg = ns.next()
        assert msg.startswith("READY=1\nSTATUS=reloaded: 2 listeners, 1 domains cached"), msg
        p.send_signal(signal.SIGTERM)
        assert ns.next() == "STOPPING=1"
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        ns.close()
        log.close()


@T("socket activation: listeners inherited from systemd-socket-activate serve Postfix")
def _(ctx):
    sock = f"{ctx['dir']}/sm.sock"
    log = open(f"{ctx['dir']}/activate.log", "w")
    # Sockets made and held by the activator: the daemon binds nothing itself.
    p = subprocess.Popen(["systemd-socket-activate", "-l", "127.0.0.1:8461", "-l", sock,
                          W.default_daemon_binary(), "-f", "-c", ctx["conf"]],
                         stdout=log, stderr=subprocess.STDOUT)
    try:
        W.wait_until(lambda: os.path.exists(sock) and W.tcp_accepts("127.0.0.1", 8461), 10,
                     what="the activator's sockets")
        expect(ctx["w"], "socketmap:inet:127.0.0.1:8461:postfix")
        expect(ctx["w"], f"socketmap:unix:{sock}:postfix")
        log.flush()
        text = Path(f"{ctx['dir']}/activate.log").read_text()
        assert "server listening on 127.0.0.1:8461" in text, text
        assert "Address already in use" not in text, text
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()


@T("socket activation: a passed socket no listen entry names is a clear start-up error")
def _(ctx):
    log = open(f"{ctx['dir']}/stray.log", "w")
    p = subprocess.Popen(["systemd-socket-activate", "-l", "127.0.0.1:8461", "-l",
                          "127.0.0.1:8499", W.default_daemon_binary(), "-f", "-c", ctx["conf"]],
                         stdout=log, stderr=subprocess.STDOUT)
    try:
        W.wait_until(lambda: W.tcp_accepts("127.0.0.1", 8499), 10, what="the activator")
        # The first connection makes the activator start the daemon, which refuses.
        try:
            socket.create_connection(("127.0.0.1", 8499), timeout=2).close()
        except OSError:
            pass
        W.wait_until(lambda: "no listen entry names" in
                     Path(f"{ctx['dir']}/stray.log").read_text(), 10, what="the error")
        text = Path(f"{ctx['dir']}/stray.log").read_text()
        assert '{ address = "127.0.0.1:8499"; }' in text, text
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(10)
        log.close()


@T("journal: with JOURNAL_STREAM naming stderr, lines carry <priority> prefixes, no timestamps")
def _(ctx):
    path = f"{ctx['dir']}/journal.log"
    with open(path, "w") as f:
        st = os.fstat(f.fileno())
        bad = Path(ctx["dir"]) / "bad.conf"
        bad.write_text(Path(ctx["conf"]).read_text().replace(
            'cache: { backend = "memory"; };',
            f'cache: {{ backend = "sqlite"; }};\nsqlite: {{ path = "{ctx["dir"]}/nodir/x/c.db"; }};'))
        r = subprocess.run([W.default_daemon_binary(), "-f", "-c", str(bad)], stderr=f,
                           env=dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}"),
                           timeout=20)
    assert r.returncode == 1
    lines = Path(path).read_text().splitlines()
    assert lines and all(line[:3] in ("<3>", "<4>", "<6>", "<7>") for line in lines), lines
    assert lines[0].startswith("<6>mtastsd "), lines[0]
    assert any(line.startswith("<3>") and "nodir" in line for line in lines), lines


taplib.run(setup, teardown)
