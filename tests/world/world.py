#!/usr/bin/env python3
"""world.py: the mtastsd integration test world: runtime CA, unbound, nginx, odd TLS server, Postfix
smtpd as MX hosts, clients.

Stdlib only (Debian 12 python3). Run the tests that use it under tests/world/netns-run, which gives
them a private network namespace where the real ports 53 and 443 on loopback are free. See
tests/world/README.md for the API; the short form:

    with World("/tmp/w") as w:         # CA, unbound :53, nginx :443, Python TLS on 127.0.0.2:443
        w.add_domain("good.test")       # TXT, MX, A of mta-sts.good.test, policy file, certificate
        w.add_domain("bad.test", cert="expired")
        d = w.daemon(config_text)       # the daemon under test, ready when its port accepts
        rc, out = w.postmap_query("good.test", "socketmap:inet:127.0.0.1:8461:postfix")
        assert w.request_count("good.test") == 1
"""

import collections
import errno
import http.client
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import smtplib
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP_SRCDIR = HERE.parent.parent

DEFAULT_TXT = object()      # sentinel: ["v=STSv1; id=1;"]
DEFAULT_POLICY = object()   # sentinel: enforce policy naming mx1.<domain>
DEFAULT_MX = object()       # sentinel: [(10, "mx1.<domain>")]

SPECIAL_ADDRESS = "127.0.0.2"   # the Python TLS server for what nginx cannot do
STALL_SECONDS = 600             # upper bound of any stall (stop() ends them earlier)
CERT_KINDS = ("good", "wrong-name", "expired", "not-yet-valid", "self-signed", "no-intermediate",
              "untrusted-root", "cn-only", "wildcard")
STALL_MODES = ("drip", "headers", "handshake")
TRUNCATE_MODES = ("length", "chunked", "eof")
DNS_FAIL_MODES = ("servfail", "timeout", "refused")


# ================================================================================================
# small helpers
# ================================================================================================

def wait_until(pred, timeout, interval=0.02, what="condition"):
    """Poll pred() until it returns a true value (returned) or raise TimeoutError after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def tcp_accepts(host, port, timeout=0.5):
    """True when a TCP (or, if host is a path, unix stream) connect succeeds."""
    try:
        if port is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.connect(host)
        else:
            s = socket.create_connection((host, port), timeout=timeout)
        s.close()
        return True
    except OSError:
        return False


def ipv6_loopback_usable():
    if not socket.has_ipv6:
        return False
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def _norm_domain(domain):
    d = domain.strip().rstrip(".").lower()
    if not d or " " in d:
        raise ValueError(f"bad domain {domain!r}")
    return d


def _fqdn(name):
    name = name.strip().lower()
    return "." if name in ("", ".") else name.rstrip(".") + "."


def _labels(name):
    return tuple(label for label in _fqdn(name).split(".") if label)


def _child_pids(pid):
    """PIDs whose parent is pid (reads /proc; used to find nginx workers, never by name)."""
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    out += [int(x) for x in f.read().split()]
            except OSError:
                break
        else:
            return out
    except OSError:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return out


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def spawn(cmd, log_path, env=None, cwd=None):
    """Start cmd with stdout+stderr appended to log_path, in its own session (terminal signals are
    for the test, not for its servers) and, when setpriv(1) exists, with a parent-death SIGKILL so
    a crashed test leaves nothing behind. Call from the main thread: the death signal follows the
    thread that forks."""
    setpriv = shutil.which("setpriv")
    full = ([setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []) + [str(c) for c in cmd]
    log = open(log_path, "ab", buffering=0)
    try:
        return subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=cwd, start_new_session=True, close_fds=True)
    finally:
        log.close()


def terminate(proc, sig=signal.SIGTERM, timeout=5.0, extra_pids=()):
    """Stop one process we started (and listed children of it), by PID, bounded in time."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                pass
    for pid in extra_pids:
        if _pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return proc.returncode


def tail(path, lines=30):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"({path}: {e})"
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def make_body(policy, body_bytes=None, min_bytes=None):
    """The bytes to serve: the policy (str or bytes), padded with valid extension lines
    ("pad: xxx...") to exactly body_bytes (or to at least min_bytes). A body_bytes smaller than
    the policy truncates the policy."""
    if policy is None:
        base = b""
    elif isinstance(policy, bytes):
        base = policy
    else:
        base = policy.encode("utf-8")
    target = body_bytes
    if target is None and min_bytes is not None and len(base) < min_bytes:
        target = min_bytes
    if target is None:
        return base
    if target <= len(base):
        return base[:target]
    if base and not base.endswith(b"\n"):
        base += b"\n"
    r = target - len(base)
    if r < 0:                  # the newline we added does not fit: drop it, pad with spaces
        base = base[:-1]
        r = target - len(base)
    out = [base]
    if 0 < r < 7:              # too short for a "pad: x\n" line: trailing WSP is allowed
        if base.endswith(b"\n"):
            return base[:-1] + b" " * r + b"\n"
        return base + b" " * r
    while r > 0:
        n = min(1000, r)
        if 0 < r - n < 7:
            n = r - 7
        out.append(b"pad: " + b"x" * (n - 6) + b"\n")
        r -= n
    body = b"".join(out)
    assert len(body) == target
    return body


# ================================================================================================
# runtime CA (openssl CLI)
# ================================================================================================

_CA_CNF = """\
# openssl.cnf: the world's test CAs (written by world.py)
[ca]
default_ca = int_ca

[int_ca]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
certificate = $dir/int.pem
private_key = $dir/int.key
default_md = sha256
default_days = 30
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no

[root_ca]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
certificate = $dir/root.pem
private_key = $dir/root.key
default_md = sha256
default_days = 3650
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no

[other_ca]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
certificate = $dir/other-root.pem
private_key = $dir/other-root.key
default_md = sha256
default_days = 30
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no

[policy_any]
commonName = supplied

[req]
distinguished_name = req_dn
prompt = no

[req_dn]
CN = unused

[v3_root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[v3_int]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


class Ca:
    """A root, an intermediate, an untrusted second root and leaves, made with the openssl CLI.

    ca_file (root.pem) is what the daemon trusts. leaf(host, kind) returns (chain_pem, key_pem) for
    the server; kinds: good, wrong-name (SAN www.<parent>), expired, not-yet-valid, self-signed,
    no-intermediate (leaf only, intermediate not sent), untrusted-root (chain to other-root),
    cn-only (name only in the subject CN, no SAN), wildcard (SAN *.<parent>)."""

    def __init__(self, directory, openssl="openssl"):
        self.dir = Path(directory)
        self.openssl = openssl
        self._lock = threading.Lock()

    @property
    def ca_file(self):
        return str(self.dir / "root.pem")

    @property
    def intermediate_file(self):
        return str(self.dir / "int.pem")

    @property
    def key_file(self):
        return str(self.dir / "leaf.key")

    def _run(self, *args):
        p = subprocess.run([self.openssl, *args], cwd=self.dir, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)} failed: {p.stderr.strip()}")
        return p.stdout

    @staticmethod
    def _date(delta_days):
        t = datetime.now(timezone.utc) + timedelta(days=delta_days)
        return t.strftime("%Y%m%d%H%M%SZ")

    def _genkey(self, name):
        self._run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name)

    def ensure(self):
        with self._lock:
            if (self.dir / "root.pem").exists() and (self.dir / "int.pem").exists():
                return self
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "newcerts").mkdir(exist_ok=True)
            (self.dir / "certs").mkdir(exist_ok=True)
            (self.dir / "index.txt").write_text("")
            (self.dir / "serial").write_text(f"{random.randrange(1 << 60, 1 << 62):x}\n")
            (self.dir / "openssl.cnf").write_text(_CA_CNF.format(dir=self.dir))
            for key in ("root.key", "int.key", "other-root.key", "leaf.key"):
                self._genkey(key)
            cnf = str(self.dir / "openssl.cnf")
            self._run("req", "-config", cnf, "-new", "-x509", "-key", "root.key", "-out", "root.pem",
                      "-subj", "/CN=mtastsd test world root", "-days", "3650", "-extensions", "v3_root")
            self._run("req", "-config", cnf, "-new", "-x509", "-key", "other-root.key",
                      "-out", "other-root.pem", "-subj", "/CN=mtastsd test world UNTRUSTED root",
                      "-days", "3650", "-extensions", "v3_root")
            self._run("req", "-config", cnf, "-new", "-key", "int.key", "-out", "int.csr",
                      "-subj", "/CN=mtastsd test world intermediate")
            self._run("ca", "-batch", "-config", cnf, "-name", "root_ca", "-notext",
                      "-in", "int.csr", "-out", "int.pem", "-extensions", "v3_int",
                      "-startdate", self._date(-2), "-enddate", self._date(3650))
            return self

    def leaf(self, host, kind="good"):
        """(chain_path, key_path) for host; the files are made once and reused."""
        if kind not in CERT_KINDS:
            raise ValueError(f"unknown cert kind {kind!r}; known: {', '.join(CERT_KINDS)}")
        self.ensure()
        host = host.lower().rstrip(".")
        parent = host.split(".", 1)[1] if "." in host else host
        chain = self.dir / "certs" / f"{host}.{kind}.pem"
        with self._lock:
            if chain.exists():
                return str(chain), self.key_file
            names = {"wrong-name": [f"www.{parent}"], "wildcard": [f"*.{parent}"],
                     "cn-only": []}.get(kind, [host])
            cn = names[0] if names else host
            start, end = {"expired": (-60, -30), "not-yet-valid": (30, 60)}.get(kind, (-1, 30))
            stem = self.dir / "certs" / f"{host}.{kind}"
            ext = stem.with_suffix(".ext")
            lines = ["[leaf]", "basicConstraints = critical,CA:FALSE",
                     "keyUsage = critical,digitalSignature", "extendedKeyUsage = serverAuth",
                     "subjectKeyIdentifier = hash"]
            if kind != "self-signed":
                lines.append("authorityKeyIdentifier = keyid")
            if names:
                lines.append("subjectAltName = " + ",".join(f"DNS:{n}" for n in names))
            ext.write_text("\n".join(lines) + "\n")
            cnf = str(self.dir / "openssl.cnf")
            leaf_pem = str(stem) + ".leaf.pem"
            csr = str(stem) + ".csr"
            self._run("req", "-config", cnf, "-new", "-key", "leaf.key", "-out", csr, "-subj", f"/CN={cn}")
            if kind == "self-signed":
                self._run("x509", "-req", "-in", csr, "-key", "leaf.key", "-out", leaf_pem,
                          "-days", "30", "-extfile", str(ext), "-extensions", "leaf")
            else:
                self._run("ca", "-batch", "-config", cnf,
                          "-name", "other_ca" if kind == "untrusted-root" else "int_ca",
                          "-notext", "-in", csr, "-out", leaf_pem,
                          "-extfile", str(ext), "-extensions", "leaf",
                          "-startdate", self._date(start), "-enddate", self._date(end))
            parts = [Path(leaf_pem).read_text()]
            if kind in ("good", "wrong-name", "expired", "not-yet-valid", "cn-only", "wildcard"):
                parts.append((self.dir / "int.pem").read_text())
            elif kind == "untrusted-root":
                parts.append((self.dir / "other-root.pem").read_text())
            tmp = chain.with_suffix(".tmp")
            tmp.write_text("".join(parts))
            tmp.rename(chain)
            return str(chain), self.key_file


# ================================================================================================
# DNS client (raw queries, so no dig is needed)
# ================================================================================================

DNS_TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28,
             "SRV": 33, "TLSA": 52, "ANY": 255}
DNS_TYPE_NAMES = {v: k for k, v in DNS_TYPES.items()}
DNS_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}

RR = collections.namedtuple("RR", "name type ttl value")


class DnsResponse:
    """rcode (int), rcode_name, flags, answer and authority (lists of RR). RR.value is: TXT ->
    list of bytes (one per character-string); A/AAAA -> str; CNAME/NS/PTR -> absolute name;
    MX -> (preference, exchange); SOA -> (mname, rname, serial, refresh, retry, expire, minimum)."""

    def __init__(self, rcode, flags, answer, authority, raw):
        self.rcode = rcode
        self.rcode_name = DNS_RCODES.get(rcode, str(rcode))
        self.flags = flags
        self.answer = answer
        self.authority = authority
        self.raw = raw

    def rrs(self, rtype, section="answer"):
        return [rr for rr in getattr(self, section) if rr.type == rtype]

    def txt(self):
        """Each TXT RR's strings joined without spaces (RFC 8461 §3.1), as str (bytes decoded latin-1)."""
        return [b"".join(rr.value).decode("latin-1") for rr in self.rrs("TXT")]

    def soa(self):
        soas = self.rrs("SOA", "authority")
        return soas[0] if soas else None

    def __repr__(self):
        return f"<DnsResponse {self.rcode_name} answer={self.answer} authority={self.authority}>"


def _dns_encode_name(name):
    out = b""
    for label in _labels(name):
        raw = label.encode("ascii")
        if len(raw) > 63:
            raise ValueError(f"label too long in {name!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def _dns_decode_name(msg, off):
    labels, end, hops = [], None, 0
    while True:
        length = msg[off]
        if length & 0xC0 == 0xC0:
            if end is None:
                end = off + 2
            off = ((length & 0x3F) << 8) | msg[off + 1]
            hops += 1
            if hops > 64:
                raise ValueError("compression loop")
            continue
        off += 1
        if length == 0:
            break
        labels.append(msg[off:off + length].decode("latin-1"))
        off += length
    return ".".join(labels) + ".", (end if end is not None else off)


def _dns_parse(msg):
    _qid, flags, qd, an, ns, _ar = struct.unpack(">HHHHHH", msg[:12])
    off = 12
    for _ in range(qd):
        _, off = _dns_decode_name(msg, off)
        off += 4
    sections = []
    for count in (an, ns):
        rrs = []
        for _ in range(count):
            name, off = _dns_decode_name(msg, off)
            rtype, _cls, ttl, rdlen = struct.unpack(">HHIH", msg[off:off + 10])
            off += 10
            rd, rdoff = msg[off:off + rdlen], off
            off += rdlen
            tname = DNS_TYPE_NAMES.get(rtype, f"TYPE{rtype}")
            if tname == "TXT":
                value, i = [], 0
                while i < len(rd):
                    value.append(rd[i + 1:i + 1 + rd[i]])
                    i += 1 + rd[i]
            elif tname in ("CNAME", "NS", "PTR"):
                value = _dns_decode_name(msg, rdoff)[0]
            elif tname == "MX":
                value = (struct.unpack(">H", rd[:2])[0], _dns_decode_name(msg, rdoff + 2)[0])
            elif tname == "A":
                value = socket.inet_ntop(socket.AF_INET, rd)
            elif tname == "AAAA":
                value = socket.inet_ntop(socket.AF_INET6, rd)
            elif tname == "SOA":
                mname, o = _dns_decode_name(msg, rdoff)
                rname, o = _dns_decode_name(msg, o)
                value = (mname, rname) + struct.unpack(">IIIII", msg[o:o + 20])
            else:
                value = rd
            rrs.append(RR(name, tname, ttl, value))
        sections.append(rrs)
    return DnsResponse(flags & 0xF, flags, sections[0], sections[1], msg)


def dns_query(name, qtype="A", server="127.0.0.1:53", timeout=2.0, tcp=False):
    """One recursive query; UDP with TCP fallback on TC. Raises TimeoutError when no answer comes."""
    host, _, port = server.rpartition(":")
    host = host.strip("[]")
    port = int(port)
    qid = random.randrange(65536)
    query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + _dns_encode_name(name) + \
        struct.pack(">HH", DNS_TYPES[qtype.upper()], 1)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + timeout
    if not tcp:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, port))
            s.send(query)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no DNS answer for {name} {qtype} within {timeout}s")
                s.settimeout(left)
                try:
                    msg = s.recv(65535)
                except socket.timeout:
                    raise TimeoutError(f"no DNS answer for {name} {qtype} within {timeout}s") from None
                if len(msg) >= 12 and struct.unpack(">H", msg[:2])[0] == qid:
                    break
            if not (struct.unpack(">H", msg[2:4])[0] & 0x0200):
                return _dns_parse(msg)
    with socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic())) as s:
        s.sendall(struct.pack(">H", len(query)) + query)
        buf = b""
        while len(buf) < 2 or len(buf) < 2 + struct.unpack(">H", buf[:2])[0]:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65537)
            except socket.timeout:
                raise TimeoutError(f"no DNS answer (tcp) for {name} {qtype}") from None
            if not chunk:
                raise ConnectionError("DNS server closed the TCP connection")
            buf += chunk
        return _dns_parse(buf[2:2 + struct.unpack(">H", buf[:2])[0]])


# ================================================================================================
# socketmap (netstring) clients
# ================================================================================================

def netstring(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return str(len(data)).encode() + b":" + data + b","


class NetstringError(Exception):
    pass


class SocketmapClient:
    """One connection to a socketmap server; query() can be repeated (Postfix reuses connections)."""

    def __init__(self, host="127.0.0.1", port=8461, timeout=10.0):
        if port is None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(host)
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def read_reply(self, max_len=100000):
        """The next reply netstring's payload, as str."""
        while b":" not in self.buf:
            if len(self.buf) > 10:
                raise NetstringError(f"no ':' in {self.buf[:20]!r}")
            self._fill()
        head, _, rest = self.buf.partition(b":")
        if not head.isdigit():
            raise NetstringError(f"bad netstring length {head!r}")
        n = int(head)
        if n > max_len:
            raise NetstringError(f"reply length {n} > {max_len}")
        while len(rest) < n + 1:
            self._fill()
            head, _, rest = self.buf.partition(b":")
        if rest[n:n + 1] != b",":
            raise NetstringError(f"netstring not terminated by ',': {rest[n:n + 1]!r}")
        self.buf = rest[n + 1:]
        return rest[:n].decode("utf-8", "replace")

    def query(self, name, key):
        self.send_raw(netstring(f"{name} {key}"))
        return self.read_reply()

    def pipeline(self, pairs):
        """Send every (name, key) request in one write, then read as many replies."""
        self.send_raw(b"".join(netstring(f"{n} {k}") for n, k in pairs))
        return [self.read_reply() for _ in pairs]


def socketmap_query(host, port, name, key, timeout=10.0):
    """One request on a fresh connection; the reply payload, e.g. 'OK secure match=...'."""
    with SocketmapClient(host, port, timeout) as c:
        return c.query(name, key)


def socketmap_raw(host, port, data, timeout=2.0, half_close=False):
    """Send raw bytes; return (bytes received, closed_by_peer) after the peer closes or timeout s
    pass. half_close shuts down our write side after sending."""
    with SocketmapClient(host, port, timeout) as c:
        c.send_raw(data)
        if half_close:
            c.sock.shutdown(socket.SHUT_WR)
        out, deadline = b"", time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out, False
            c.sock.settimeout(left)
            try:
                chunk = c.sock.recv(65536)
            except socket.timeout:
                return out, False
            except ConnectionResetError:
                return out, True
            if not chunk:
                return out, True
            out += chunk


class PostmapResult(tuple):
    """(exit_code, stdout) with .stderr as an attribute."""

    def __new__(cls, rc, out, err):
        self = super().__new__(cls, (rc, out))
        self.rc, self.out, self.stderr = rc, out, err
        return self


# ================================================================================================
# the domain model
# ================================================================================================

class DomainSpec:
    """Everything add_domain() was told about one domain (see World.add_domain)."""

    FIELDS = dict(txt=DEFAULT_TXT, txt_cname=None, txt_ttl=300, policy=DEFAULT_POLICY, mx=DEFAULT_MX,
                  mx_ttl=300, cert="good", status=200, content_type="text/plain", redirect_to=None,
                  body_bytes=None, stall=False, truncate=False, servfail=False, address=None,
                  https=True, server=None, neg_ttl=60, tlsrpt=None, host_ttl=300)

    def __init__(self, domain, **kw):
        unknown = set(kw) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"unknown add_domain option(s): {', '.join(sorted(unknown))}")
        self.domain = _norm_domain(domain)
        for k, v in self.FIELDS.items():
            setattr(self, k, kw.get(k, v))
        d = self.domain
        if self.txt is DEFAULT_TXT:
            self.txt = ["v=STSv1; id=1;"]
        if self.policy is DEFAULT_POLICY:
            self.policy = f"version: STSv1\nmode: enforce\nmx: mx1.{d}\nmax_age: 86400\n"
        if self.mx is DEFAULT_MX:
            self.mx = [(10, f"mx1.{d}")]
        if self.cert not in CERT_KINDS:
            raise ValueError(f"cert must be one of {CERT_KINDS}")
        self.stall = {False: None, None: None, True: "drip"}.get(self.stall, self.stall)
        if self.stall is not None and self.stall not in STALL_MODES:
            raise ValueError(f"stall must be False/True or one of {STALL_MODES}")
        self.truncate = {False: None, None: None, True: "length"}.get(self.truncate, self.truncate)
        if self.truncate is not None and self.truncate not in TRUNCATE_MODES:
            raise ValueError(f"truncate must be False/True or one of {TRUNCATE_MODES}")
        self.servfail = {False: None, None: None, True: "servfail"}.get(self.servfail, self.servfail)
        if self.servfail is not None and self.servfail not in DNS_FAIL_MODES:
            raise ValueError(f"servfail must be False/True or one of {DNS_FAIL_MODES}")
        if self.server not in (None, "nginx", "python"):
            raise ValueError("server must be None, 'nginx' or 'python'")
        if self.server == "nginx" and (self.stall in ("headers", "handshake") or self.truncate):
            raise ValueError(f"nginx cannot do stall={self.stall!r} truncate={self.truncate!r}")
        if isinstance(self.address, str):
            self.address = [self.address]
        if self.address is not None:
            self.address = [str(ipaddress.ip_address(a)) for a in self.address]
        self.status = int(self.status)

    @property
    def policy_host(self):
        return f"mta-sts.{self.domain}"

    @property
    def served_by(self):
        if not self.https:
            return None
        if self.server:
            return self.server
        if self.stall in ("headers", "handshake") or self.truncate:
            return "python"
        return "nginx"

    @property
    def addresses(self):
        if self.address is not None:
            return self.address
        return [SPECIAL_ADDRESS if self.served_by == "python" else "127.0.0.1"]

    @property
    def txt_owner(self):
        return _fqdn(self.txt_cname) if self.txt_cname else _fqdn(f"_mta-sts.{self.domain}")

    @property
    def redirect_status(self):
        if self.status in (301, 302, 303, 307, 308):
            return self.status
        if self.redirect_to is not None and self.status == 200:
            return 301
        return None

    def redirect_url(self):
        return self.redirect_to or f"https://{self.policy_host}/.well-known/moved-mta-sts.txt"

    def body(self):
        return make_body(self.policy, self.body_bytes,
                         min_bytes=16384 if self.stall == "drip" else None)

    def copy(self, **changes):
        kw = {k: getattr(self, k) for k in self.FIELDS}
        kw.update(changes)
        return DomainSpec(self.domain, **kw)


def txt_rdata(record):
    """Zone-file rdata for one TXT RR. record: str/bytes (split into 255-byte strings) or a list of
    str/bytes (one character-string each, at most 255 bytes)."""
    if isinstance(record, (str, bytes)):
        raw = record.encode("utf-8") if isinstance(record, str) else record
        strings = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
    else:
        strings = [s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in record]
        if not strings:
            raise ValueError("a TXT RR needs at least one string")
    parts = []
    for s in strings:
        if len(s) > 255:
            raise ValueError(f"TXT character-string longer than 255 bytes ({len(s)})")
        esc = "".join("\\" + chr(b) if b in (0x22, 0x5C) else chr(b) if 0x20 <= b < 0x7F
                      else f"\\{b:03d}" for b in s)
        parts.append(f'"{esc}"')
    return " ".join(parts)


# ================================================================================================
# unbound: a recursive resolver whose "internet" is one auth-zone per domain plus a root zone
# ================================================================================================

class Dns:
    """The world's DNS data and the unbound process serving it.

    Data is a flat store owner -> type -> (ttl, [rdata text]). Each owner lands in the auth-zone of
    the deepest registered apex above it ("." otherwise). unbound answers as a recursive resolver
    (module iterator, auth-zones for-upstream only), so CNAMEs are chased across zones and negative
    answers carry the zone's SOA. Changes rewrite zone files, then auth_zone_reload (or, when zones
    or failure modes change, reload) over the unix control socket, flush the cache and wait until a
    serial TXT (_serial._world.) shows the new generation."""

    def __init__(self, directory, address="127.0.0.1", port=53, log=None):
        self.dir = Path(directory)
        self.address = address
        self.port = port
        self.log = log or (lambda msg: None)
        self.rr = {}            # owner fqdn -> {rtype: (ttl, [rdata])}
        self.zones = {".": 60}  # apex fqdn -> negative TTL
        self.fail = {}          # fqdn -> servfail|timeout|refused
        self.gen = 0
        self.proc = None
        self._written = {}      # file path -> text last written
        self._conf_text = None

    # ---- data ------------------------------------------------------------------------------
    def set_rrset(self, owner, rtype, ttl, rdatas):
        owner = _fqdn(owner)
        if rdatas:
            self.rr.setdefault(owner, {})[rtype.upper()] = (int(ttl), list(rdatas))
        else:
            self.del_rrset(owner, rtype)

    def del_rrset(self, owner, rtype=None):
        owner = _fqdn(owner)
        if owner in self.rr:
            if rtype is None:
                del self.rr[owner]
            else:
                self.rr[owner].pop(rtype.upper(), None)
                if not self.rr[owner]:
                    del self.rr[owner]

    def add_zone(self, apex, neg_ttl=60):
        self.zones[_fqdn(apex)] = int(neg_ttl)

    def set_fail(self, name, mode):
        name = _fqdn(name)
        if mode is None:
            self.fail.pop(name, None)
            return
        if mode not in DNS_FAIL_MODES:
            raise ValueError(f"DNS failure mode must be one of {DNS_FAIL_MODES}")
        if mode == "servfail" and name in self.zones:
            raise ValueError(f"servfail works below a zone apex, not at {name} itself")
        self.fail[name] = mode

    def zone_of(self, owner):
        labels = _labels(owner)
        best = "."
        for apex in self.zones:
            al = _labels(apex)
            if len(al) <= len(labels) and labels[len(labels) - len(al):] == al and \
                    len(al) > len(_labels(best)):
                best = apex
        return best

    # ---- rendering --------------------------------------------------------------------------
    def zone_file(self, apex):
        return self.dir / ("root.zone" if apex == "." else f"{apex.rstrip('.')}.zone")

    def render_zones(self):
        out = {}
        for apex, neg in self.zones.items():
            host = "world." if apex == "." else apex
            out[apex] = [f"$ORIGIN .",
                         f"{apex} {neg} IN SOA ns.{host} hostmaster.{host} {self.gen} 3600 600 86400 {neg}",
                         f"{apex} 3600 IN NS ns.world.invalid."]
        out["."].append(f'_serial._world. 0 IN TXT "{self.gen}"')
        lame = {n for n, m in self.fail.items() if m == "servfail"}
        for owner in sorted(self.rr):
            if any(owner == n or owner.endswith("." + n) for n in lame):
                continue
            for rtype, (ttl, rdatas) in sorted(self.rr[owner].items()):
                for rdata in rdatas:
                    out[self.zone_of(owner)].append(f"{owner} {ttl} IN {rtype} {rdata}")
        for name in sorted(lame):   # a delegation to a server that has no address: SERVFAIL
            out[self.zone_of(name)].append(f"{name} 60 IN NS ns.lame.invalid.")
        return {apex: "\n".join(lines) + "\n" for apex, lines in out.items()}

    def render_conf(self):
        d = self.dir
        lines = [
            "# unbound.conf: the test world's resolver (written by world.py; no system files used)",
            "server:",
            f"  interface: {self.address}@{self.port}",
            "  do-ip6: no" if ":" not in self.address else "  do-ip6: yes",
            "  do-daemonize: no",
            '  chroot: ""',
            '  username: ""',
            f'  directory: "{d}"',
            f'  pidfile: "{d}/unbound.pid"',
            f'  logfile: "{d}/unbound.log"',
            "  use-syslog: no",
            "  log-time-ascii: yes",
            "  log-queries: yes",
            "  verbosity: 1",
            "  num-threads: 1",
            "  so-reuseport: no",
            '  module-config: "iterator"',
            "  access-control: 127.0.0.0/8 allow",
            "  access-control: ::1/128 allow",
            "  qname-minimisation: no",
            "  prefetch: no",
            "  serve-expired: no",
            "  do-not-query-localhost: yes",
            # unbound's built-in RFC 6761 zones would shadow test names like a.test.
            '  local-zone: "test." nodefault',
            '  local-zone: "invalid." nodefault',
            '  local-zone: "onion." nodefault',
            '  local-zone: "home.arpa." nodefault',
        ]
        for name, mode in sorted(self.fail.items()):
            if mode == "timeout":
                lines.append(f'  local-zone: "{name}" deny')
            elif mode == "refused":
                lines.append(f'  local-zone: "{name}" always_refuse')
        lines += ["remote-control:", "  control-enable: yes",
                  f'  control-interface: "{d}/control.sock"', "  control-use-cert: no"]
        for apex in sorted(self.zones, key=lambda a: (len(_labels(a)), a)):
            lines += ["auth-zone:", f'  name: "{apex}"', f'  zonefile: "{self.zone_file(apex)}"',
                      "  for-downstream: no", "  for-upstream: yes", "  fallback-enabled: no"]
        return "\n".join(lines) + "\n"

    def _write(self, path, text):
        path = Path(path)
        if self._written.get(str(path)) == text:
            return False
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.rename(path)
        self._written[str(path)] = text
        return True

    # ---- control ----------------------------------------------------------------------------
    def control(self, command, timeout=10.0):
        """One unbound-control command over the unix socket (protocol 'UBCT1 <cmd>\\n')."""
        path = str(self.dir / "control.sock")
        deadline = time.monotonic() + timeout
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(max(0.1, deadline - time.monotonic()))
                s.connect(path)
                break
            except OSError as e:
                s.close()
                if time.monotonic() >= deadline or e.errno not in (errno.ENOENT, errno.ECONNREFUSED):
                    raise RuntimeError(f"unbound control socket {path}: {e}") from None
                time.sleep(0.02)
        with s:
            s.sendall(b"UBCT1 " + command.encode() + b"\n")
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        text = out.decode("utf-8", "replace")
        if text.startswith("error"):
            raise RuntimeError(f"unbound-control {command}: {text.strip()}")
        return text

    def _serial_ok(self):
        try:
            r = dns_query("_serial._world.", "TXT", self.server, timeout=0.3)
        except (TimeoutError, OSError):
            return False
        return r.txt() == [str(self.gen)]

    @property
    def server(self):
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self, timeout=10.0):
        self.dir.mkdir(parents=True, exist_ok=True)
        self.gen += 1
        zones = self.render_zones()
        for apex, text in zones.items():
            self._write(self.zone_file(apex), text)
        self._conf_text = self.render_conf()
        self._write(self.dir / "unbound.conf", self._conf_text)
        check = subprocess.run(["unbound-checkconf", str(self.dir / "unbound.conf")],
                               capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"unbound-checkconf: {check.stdout}{check.stderr}")
        self.proc = spawn(["unbound", "-d", "-c", self.dir / "unbound.conf"], self.dir / "unbound.stderr")
        try:
            wait_until(lambda: self.proc.poll() is not None or self._serial_ok(), timeout,
                       what="unbound to answer")
        except TimeoutError:
            self.stop()
            raise RuntimeError("unbound did not answer:\n" + tail(self.dir / "unbound.stderr")) from None
        if self.proc.poll() is not None:
            raise RuntimeError("unbound exited:\n" + tail(self.dir / "unbound.stderr"))
        self.log(f"unbound pid={self.proc.pid} on {self.server}")

    def apply(self, timeout=10.0):
        """Push the current data to the running unbound and wait until it answers with it."""
        if self.proc is None:
            return
        if self.proc.poll() is not None:
            raise RuntimeError("unbound is not running:\n" + tail(self.dir / "unbound.stderr"))
        self.gen += 1
        zones = self.render_zones()
        changed = [apex for apex, text in zones.items() if self._write(self.zone_file(apex), text)]
        conf = self.render_conf()
        if conf != self._conf_text:
            self._conf_text = conf
            self._write(self.dir / "unbound.conf", conf)
            self.control("reload")
            self.log(f"unbound reload (gen {self.gen})")
        else:
            for apex in changed:
                self.control(f"auth_zone_reload {apex}")
            self.control("flush_zone .")
            self.control("flush_infra all")
            self.control("flush_requestlist")
        wait_until(self._serial_ok, timeout, what=f"unbound to serve generation {self.gen}")

    def stop(self, timeout=5.0):
        if self.proc is not None and self.proc.returncode is None:
            terminate(self.proc, signal.SIGTERM, timeout)
            self.log(f"unbound stopped rc={self.proc.returncode}")

    def queries(self, name=None, qtype=None, since=0):
        """Client queries logged by unbound (log-queries) after byte offset since: list of
        (client, name, type). Our own serial probes are left out."""
        out = []
        try:
            with open(self.dir / "unbound.log", "rb") as f:
                f.seek(since)
                data = f.read().decode("utf-8", "replace")
        except OSError:
            return out
        for m in re.finditer(r"info: (\S+) (\S+) (\S+) IN$", data, re.M):
            client, qname, t = m.groups()
            if qname.lower() == "_serial._world.":
                continue
            if name is not None and qname.lower() != _fqdn(name):
                continue
            if qtype is not None and t != qtype.upper():
                continue
            out.append((client, qname, t))
        return out

    def log_size(self):
        try:
            return os.path.getsize(self.dir / "unbound.log")
        except OSError:
            return 0


# ================================================================================================
# nginx: one server block per domain, SNI, TLS 1.2/1.3, JSON access log
# ================================================================================================

def _ngx_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Nginx:
    LOG_FORMAT = (
        '{"msec":$msec,"server":"nginx","addr":"$server_addr","sni":"$ssl_server_name",'
        '"host":"$host","method":"$request_method","uri":"$request_uri","status":$status,'
        '"bytes":$body_bytes_sent,"request_time":$request_time,"tls":"$ssl_protocol",'
        '"ua":"$http_user_agent","if_none_match":"$http_if_none_match",'
        '"if_modified_since":"$http_if_modified_since","connection":$connection,'
        '"connection_requests":$connection_requests}')

    def __init__(self, directory, ca, port=443, ipv6=False, log=None):
        self.dir = Path(directory)
        self.ca = ca
        self.port = port
        self.ipv6 = ipv6
        self.log = log or (lambda msg: None)
        self.proc = None
        self.gen = 0
        self._conf_text = None

    @property
    def access_log(self):
        return self.dir / "access.log"

    def www(self, domain):
        return self.dir / "www" / domain

    def write_body(self, spec):
        d = self.www(spec.domain) / ".well-known"
        d.mkdir(parents=True, exist_ok=True)
        target = d / "mta-sts.txt"
        body = spec.body()
        if spec.policy is None and spec.body_bytes is None and spec.stall != "drip":
            target.unlink(missing_ok=True)
        else:
            tmp = d / "mta-sts.txt.tmp"
            tmp.write_bytes(body)
            tmp.rename(target)
        alt = d / "error-body.txt"
        tmp = d / "error-body.txt.tmp"
        tmp.write_bytes(body)
        tmp.rename(alt)

    def render(self, specs):
        d = self.dir
        addrs = ["127.0.0.1"]
        for spec in specs:
            if spec.served_by != "nginx":
                continue
            for a in spec.addresses:
                if a not in addrs and a != SPECIAL_ADDRESS:
                    addrs.append(a)
        if not self.ipv6:
            addrs = [a for a in addrs if ":" not in a]
        elif "::1" not in addrs:
            addrs.append("::1")
        listen = [f"[{a}]:{self.port}" if ":" in a else f"{a}:{self.port}" for a in addrs]
        default_chain, key = self.ca.leaf("default.world.invalid", "good")
        out = [
            "# nginx.conf: the test world's HTTPS server (written by world.py; no system files used)",
            "daemon off;", "master_process on;", "worker_processes 1;",
            f"pid {d}/nginx.pid;", f"lock_file {d}/nginx.lock;", f"error_log {d}/error.log info;",
        ]
        if os.geteuid() == 0:
            out.append("user root root;")   # workers must read the world's files in any workdir
        out += [
            "events { worker_connections 4096; }",
            "http {",
            "  types { }",
            "  default_type application/octet-stream;",
            f"  log_format world escape=json '{self.LOG_FORMAT}';",
            f"  access_log {d}/access.log world;",
            f"  client_body_temp_path {d}/tmp/body;",
            f"  proxy_temp_path {d}/tmp/proxy;",
            f"  fastcgi_temp_path {d}/tmp/fastcgi;",
            f"  uwsgi_temp_path {d}/tmp/uwsgi;",
            f"  scgi_temp_path {d}/tmp/scgi;",
            "  ssl_protocols TLSv1.2 TLSv1.3;",
            "  server_names_hash_bucket_size 256;",
            "  server_names_hash_max_size 65536;",
            "  keepalive_timeout 30s;",
            "  send_timeout 3600s;",
            "  server {",
            f"    listen unix:{d}/control.sock;",
            "    access_log off;",
            f'    location = /gen {{ return 200 "{self.gen}"; }}',
            "  }",
            "  server {",
            *[f"    listen {l} ssl default_server;" for l in listen],
            "    server_name _;",
            f"    ssl_certificate {default_chain};",
            f"    ssl_certificate_key {key};",
            "    return 421;",
            "  }",
        ]
        for spec in specs:
            if spec.served_by != "nginx":
                continue
            chain, key = self.ca.leaf(spec.policy_host, spec.cert)
            www = self.www(spec.domain)
            ct = "" if spec.content_type is None else spec.content_type
            out += ["  server {", *[f"    listen {l} ssl;" for l in listen],
                    f"    server_name {spec.policy_host};",
                    f"    ssl_certificate {chain};", f"    ssl_certificate_key {key};",
                    f"    root {www};",
                    "    location = /.well-known/mta-sts.txt {"]
            if spec.redirect_status:
                out.append(f"      return {spec.redirect_status} {_ngx_str(spec.redirect_url())};")
            elif spec.status != 200:
                out += [f"      error_page 404 ={spec.status} /__world_body;", "      return 404;"]
            else:
                out += ["      types { }", f"      default_type {_ngx_str(ct)};"]
                if spec.stall == "drip":
                    out += ["      limit_rate_after 512;", "      limit_rate 1;"]
            out += ["    }",
                    "    location = /__world_body {", "      internal;",
                    f"      alias {www}/.well-known/error-body.txt;",
                    "      types { }", f"      default_type {_ngx_str(ct)};", "    }",
                    "    location / { return 404; }",
                    "  }"]
        out.append("}")
        return "\n".join(out) + "\n"

    def _gen_ok(self):
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(0.5)
            s.connect(str(self.dir / "control.sock"))
            s.sendall(b"GET /gen HTTP/1.0\r\nHost: control\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            s.close()
        except OSError:
            return False
        return data.split(b"\r\n\r\n", 1)[-1].strip() == str(self.gen).encode()

    def _write_conf(self, specs):
        self.gen += 1
        for sub in ("tmp", "www"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        text = self.render(specs)
        conf = self.dir / "nginx.conf"
        tmp = self.dir / "nginx.conf.tmp"
        tmp.write_text(text)
        tmp.rename(conf)
        self._conf_text = text
        return conf

    def _cmd(self, *extra):
        return ["nginx", "-p", f"{self.dir}/", "-c", str(self.dir / "nginx.conf"),
                "-e", str(self.dir / "error.log"), *extra]

    def start(self, specs, timeout=10.0):
        self.dir.mkdir(parents=True, exist_ok=True)
        self.access_log.touch()
        self._write_conf(specs)
        self.proc = spawn(self._cmd(), self.dir / "nginx.stderr")
        try:
            wait_until(lambda: self.proc.poll() is not None or
                       (self._gen_ok() and tcp_accepts("127.0.0.1", self.port)),
                       timeout, what="nginx to listen")
        except TimeoutError:
            self.stop()
            raise RuntimeError("nginx did not start:\n" + tail(self.dir / "error.log")) from None
        if self.proc.poll() is not None:
            raise RuntimeError("nginx exited:\n" + tail(self.dir / "nginx.stderr") + "\n" +
                               tail(self.dir / "error.log"))
        self.log(f"nginx pid={self.proc.pid} on :{self.port}")

    def reload(self, specs, timeout=10.0):
        if self.proc is None:
            return
        if self.proc.poll() is not None:
            raise RuntimeError("nginx is not running:\n" + tail(self.dir / "error.log"))
        old = self._conf_text
        self._write_conf(specs)
        test = subprocess.run(self._cmd("-t", "-q"), capture_output=True, text=True, timeout=30)
        if test.returncode != 0:
            raise RuntimeError(f"nginx -t rejected the new config: {test.stderr.strip()}")
        old_workers = _child_pids(self.proc.pid)
        self.proc.send_signal(signal.SIGHUP)
        # The master starts new workers, sleeps 100 ms, and only then tells the old ones to quit;
        # until then an old worker still accepts connections with the old configuration. So wait
        # for the new generation to answer AND for every old worker to be gone or to have renamed
        # itself "... is shutting down", which it does just before closing its listening sockets.
        wait_until(self._gen_ok, timeout, what=f"nginx generation {self.gen}")
        wait_until(lambda: all(self._worker_retired(p) for p in old_workers), timeout,
                   what="old nginx workers to stop accepting")
        self.log(f"nginx reloaded (gen {self.gen}, config {'changed' if old != self._conf_text else 'same'})")

    @staticmethod
    def _worker_retired(pid):
        if not _pid_alive(pid):
            return True
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return b"shutting down" in f.read()
        except OSError:
            return True

    def stop(self, timeout=5.0):
        if self.proc is None or self.proc.returncode is not None:
            return
        workers = _child_pids(self.proc.pid)
        terminate(self.proc, signal.SIGTERM, timeout, extra_pids=workers)
        self.log(f"nginx stopped rc={self.proc.returncode}")

    def entries(self, since=0):
        out = []
        try:
            with open(self.access_log, "rb") as f:
                f.seek(since)
                data = f.read()
        except OSError:
            return out
        for line in data.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def log_size(self):
        try:
            return os.path.getsize(self.access_log)
        except OSError:
            return 0


# ================================================================================================
# the Python TLS server (127.0.0.2:443): stalls, truncation, handshake counting
# ================================================================================================

class PyTlsServer:
    """A threaded HTTPS/1.1 server choosing its certificate by SNI, for what nginx cannot do:
    stall="handshake" (the ServerHello never comes), stall="headers" (headers, then silence),
    stall="drip" (headers, then one byte per second), truncate="length"|"chunked"|"eof" (half the
    body, then close_notify, or a bare TCP close for "eof"). It counts handshakes per SNI as well
    as requests. Every connection gets Connection: close."""

    def __init__(self, world, address=SPECIAL_ADDRESS, port=443):
        self.world = world
        self.address = address
        self.port = port
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.entries = []
        self.handshakes = collections.Counter()
        self.sock = None
        self.thread = None
        self.conns = set()
        self.threads = set()
        self._ctx_cache = {}

    def _context(self, host, kind):
        key = (host, kind)
        with self.lock:
            ctx = self._ctx_cache.get(key)
        if ctx is None:
            chain, keyfile = self.world.ca.leaf(host, kind)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(chain, keyfile)
            if host == "default.world.invalid":
                ctx.sni_callback = self._sni
            with self.lock:
                self._ctx_cache[key] = ctx
        return ctx

    def _spec_for(self, sni):
        if not sni:
            return None
        sni = sni.lower().rstrip(".")
        if not sni.startswith("mta-sts."):
            return None
        spec = self.world.specs.get(sni[len("mta-sts."):])
        return spec if spec is not None and spec.served_by == "python" else None

    def _sni(self, sslobj, server_name, _ctx):
        try:
            sslobj.world_sni = server_name
        except AttributeError:
            pass
        with self.lock:
            self.handshakes[(server_name or "").lower()] += 1
        spec = self._spec_for(server_name)
        if spec is None:
            return None
        if spec.stall == "handshake":
            self.stop_event.wait(STALL_SECONDS)
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        sslobj.context = self._context(spec.policy_host, spec.cert)
        return None

    def start(self):
        self.sock = socket.socket(socket.AF_INET6 if ":" in self.address else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.address, self.port))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self._context("default.world.invalid", "good")
        self.thread = threading.Thread(target=self._accept_loop, name="pytls-accept", daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while not self.stop_event.is_set():
            try:
                conn, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            t = threading.Thread(target=self._serve, args=(conn, peer), daemon=True, name="pytls-conn")
            with self.lock:
                self.conns.add(conn)
                self.threads.add(t)
            t.start()

    def _serve(self, conn, peer):
        tls = None
        try:
            conn.settimeout(10)
            tls = self._context("default.world.invalid", "good").wrap_socket(conn, server_side=True)
            sni = getattr(tls, "world_sni", None)
            with self.lock:
                self.conns.add(tls)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = tls.recv(4096)
                if not chunk:
                    return
                head += chunk
                if len(head) > 32768:
                    return
            t0 = time.time()
            lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            method, uri = (lines[0].split(" ") + ["", ""])[:2]
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            host = headers.get("host", "").split(":")[0].lower()
            spec = self._spec_for(sni)
            status, extra, body = self._response(spec, uri)
            entry = {"msec": t0, "server": "python", "addr": self.address, "sni": sni or "",
                     "host": host, "method": method, "uri": uri, "status": status,
                     "bytes": 0, "request_time": 0.0, "tls": tls.version(),
                     "ua": headers.get("user-agent", ""),
                     "if_none_match": headers.get("if-none-match", ""),
                     "if_modified_since": headers.get("if-modified-since", "")}
            with self.lock:
                self.entries.append(entry)
            try:
                entry["bytes"] = self._send(tls, spec, status, extra, body, method)
            finally:
                entry["request_time"] = round(time.time() - t0, 3)
                self._write_log(entry)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            for s in (tls, conn):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass
            with self.lock:
                self.conns.discard(tls)
                self.conns.discard(conn)
                self.threads.discard(threading.current_thread())

    def _write_log(self, entry):
        with self.lock:
            with open(self.world.workdir / "https" / "pytls.log", "a") as f:
                f.write(json.dumps(entry) + "\n")

    @staticmethod
    def _response(spec, uri):
        if spec is None:
            return 421, {}, b"misdirected\n"
        if uri.split("?")[0] != "/.well-known/mta-sts.txt":
            return 404, {"Content-Type": "text/plain"}, b"not found\n"
        extra = {}
        if spec.content_type is not None:
            extra["Content-Type"] = spec.content_type
        if spec.redirect_status:
            return spec.redirect_status, {"Location": spec.redirect_url()}, b""
        if spec.policy is None and spec.body_bytes is None and spec.status == 200:
            return 404, {"Content-Type": "text/plain"}, b"not found\n"
        return spec.status, extra, spec.body()

    def _send(self, tls, spec, status, extra, body, method):
        reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Status"
        hdr = [f"HTTP/1.1 {status} {reason}", "Server: world-pytls", "Connection: close"]
        hdr += [f"{k}: {v}" for k, v in extra.items()]
        mode = spec.truncate if spec else None
        if mode == "chunked":
            hdr.append("Transfer-Encoding: chunked")
        else:
            hdr.append(f"Content-Length: {len(body)}")
        tls.sendall(("\r\n".join(hdr) + "\r\n\r\n").encode("latin-1"))
        if method == "HEAD":
            return 0
        stall = spec.stall if spec else None
        if stall == "headers":
            self.stop_event.wait(STALL_SECONDS)
            return 0
        if stall == "drip":
            deadline = time.monotonic() + STALL_SECONDS
            for i in range(len(body)):
                if self.stop_event.is_set() or time.monotonic() > deadline:
                    return i
                tls.sendall(body[i:i + 1])
                self.stop_event.wait(1.0)
            return len(body)
        if mode in ("length", "eof"):
            half = body[:len(body) // 2]
            tls.sendall(half)
            if mode == "length":
                self._close_notify(tls)
            return len(half)
        if mode == "chunked":
            half = body[:len(body) // 2]
            tls.sendall(f"{len(half):x}\r\n".encode() + half + b"\r\n")
            self._close_notify(tls)
            return len(half)
        tls.sendall(body)
        self._close_notify(tls)
        return len(body)

    @staticmethod
    def _close_notify(tls):
        try:
            tls.settimeout(1.0)
            tls.unwrap()
        except (OSError, ssl.SSLError, ValueError):
            pass

    def stop(self, timeout=5.0):
        self.stop_event.set()
        if self.sock is not None:
            self.sock.close()
        with self.lock:
            conns = list(self.conns)
            threads = list(self.threads)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except (OSError, ValueError):
                pass
        if self.thread is not None:
            self.thread.join(timeout)
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))


# ================================================================================================
# a private Postfix for add_mx_server(): real smtpd with STARTTLS for mtasts-check --probe-mx
# ================================================================================================

def smtp_greeting(address, port, starttls=False, timeout=2.0):
    """The banner of the SMTP server at address:port without its code ("host ESMTP Postfix"), or
    None; with starttls, None as well unless EHLO, STARTTLS and a TLS handshake (certificate not
    checked) succeed. Ends with QUIT, so smtpd logs a clean session."""
    s = smtplib.SMTP(timeout=timeout)
    try:
        code, banner = s.connect(address, port)
        if code != 220:
            return None
        if starttls:
            s.ehlo("world.invalid")
            if s.docmd("STARTTLS")[0] != 220:
                return None
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            s.sock, s.file = ctx.wrap_socket(s.sock), None
        s.quit()
        return banner.decode("ascii", "replace")
    except (OSError, smtplib.SMTPException):
        return None
    finally:
        s.close()


class MxServer:
    """What add_mx_server() returns: one smtpd service of the world's Postfix."""

    def __init__(self, mx, host, address, port, cert, starttls, pem):
        self.mx, self.host, self.address, self.port = mx, host, address, port
        self.cert, self.starttls, self.pem = cert, starttls, pem

    def stop(self, timeout=5.0):
        """Remove this service from master.cf and reload; the port refuses connections after."""
        self.mx.remove(self, timeout)


class PostfixMx:
    """One Postfix instance per world, in <workdir>/mx: etc/ (main.cf, master.cf), queue/, data/,
    tls/ (key + chain per host and kind), maillog (maillog_file: there is no syslog in the
    namespace), postfix.out (what the postfix command printed). Each MX server is an smtpd inet
    service in master.cf with -o overrides for its name, certificate and STARTTLS; `postfix -c etc
    start` on the first, `reload` on later changes, `stop` from World.stop()."""

    ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}

    def __init__(self, directory, log=None):
        self.dir = Path(directory)
        self.etc, self.queue, self.data, self.tls = (self.dir / n
                                                     for n in ("etc", "queue", "data", "tls"))
        self.maillog = self.dir / "maillog"
        self.log = log or (lambda msg: None)
        self.servers = {}        # (address, port) -> MxServer
        self.running = False

    def _render_main(self):
        return (
            "# main.cf of the world's private Postfix (world.py): smtpd for add_mx_server() only\n"
            "compatibility_level = 3.6\n"
            f"queue_directory = {self.queue}\n"
            f"data_directory = {self.data}\n"
            "mail_owner = postfix\n"
            "setgid_group = postdrop\n"
            "myhostname = mx.world.invalid\n"
            # The services bind their own address (master.cf); inet_interfaces must only name
            # addresses an interface has, or postfix refuses to start, and lo has just 127.0.0.1.
            "inet_interfaces = loopback-only\n"
            "inet_protocols = ipv4\n"
            # postfix(1) and master log here through postlogd; maillog_file must match a prefix.
            f"maillog_file = {self.maillog}\n"
            f"maillog_file_prefixes = {self.dir}\n"
            "import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C POSTLOG_SERVICE "
            "POSTLOG_HOSTNAME\n"
            # Nothing is local, nothing is relayed: every RCPT TO is refused. Empty local maps
            # keep smtpd from asking proxymap (not in master.cf) for passwd and aliases.
            "mydestination =\nrelay_domains =\nlocal_recipient_maps =\nalias_maps =\n"
            "smtpd_relay_restrictions = reject\n"
            # Name lookups of the client could reach the world's unbound (the namespace's
            # resolver) and show up in dns_queries().
            "smtpd_peername_lookup = no\n"
            "smtpd_banner = $myhostname ESMTP $mail_name\n"
            "smtpd_tls_loglevel = 1\n")

    def _render_master(self):
        lines = ["# master.cf of the world's private Postfix (world.py); no chroot anywhere",
                 "postlog   unix-dgram n - n - 1 postlogd",
                 # smtpd gets its TLS seed from tlsmgr, and anvil counts clients per address.
                 "tlsmgr    unix - - n 1000? 1 tlsmgr",
                 "anvil     unix - - n - 1 anvil"]
        for srv in self.servers.values():
            opts = [f"myhostname={srv.host}"]
            if srv.starttls:
                opts += ["smtpd_tls_security_level=may", f"smtpd_tls_chain_files={srv.pem}"]
            else:
                opts += ["smtpd_tls_security_level=none"]   # STARTTLS not offered
            lines.append(f"{srv.address}:{srv.port} inet n - n - - smtpd "
                         + " ".join(f"-o {o}" for o in opts))
        return "\n".join(lines) + "\n"

    def _postfix(self, command, timeout=30.0):
        # Output to a file, not a pipe: the master daemon may hold on to inherited descriptors.
        with open(self.dir / "postfix.out", "ab") as out:
            return subprocess.run(["postfix", "-c", str(self.etc), command],
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  env=self.ENV, timeout=timeout).returncode

    def _failure(self, what):
        problems = {}   # message -> first line with it: a retrying client repeats them
        for line in self.log_text().splitlines():
            msg = line.partition("]: ")[2]
            if msg.startswith(("warning:", "fatal:", "panic:")):
                problems.setdefault(msg, line)
        return RuntimeError(f"postfix {what} failed:\n" + tail(self.dir / "postfix.out", 10) + "\n"
                            + "\n".join(list(problems.values())[-15:]) + "\n(errors found "
                            "before maillog_file is read go to syslog or a terminal: script -qc "
                            f"'postfix -c {self.etc} check' /dev/null shows them)")

    def _write_cf(self, name, text):
        path = self.etc / name
        try:
            if path.read_text() == text:
                return
        except OSError:
            pass
        tmp = self.etc / f".{name}.tmp"
        tmp.write_text(text)
        # Every Postfix program, the master on reload too, re-reads a main.cf younger than 2 s
        # every 0.3 s until it is older (a file being edited may be half-written). Ours is
        # whole, so date it back rather than wait.
        past = time.time() - 10
        os.utime(tmp, (past, past))
        tmp.rename(path)

    def _apply(self):
        """Write the configuration, then start the instance or make it reload."""
        for d in (self.etc, self.queue):
            d.mkdir(parents=True, exist_ok=True)
        # The master opens data/master.lock, and tlsmgr data/prng_exch, as mail_owner by their
        # full path: the work directory (mkdtemp makes it 0700) must let others through.
        mode = self.dir.parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(self.dir.parent, (mode & 0o7777) | 0o001)
        self._write_cf("main.cf", self._render_main())
        self._write_cf("master.cf", self._render_master())
        command = "reload" if self.running else "start"
        if self._postfix(command) != 0:
            raise self._failure(command)
        self.running = True

    def add(self, host, address, port, chain, key, starttls, cert, timeout=10.0):
        if ":" in address:
            raise ValueError("IPv4 addresses only (inet_protocols = ipv4): no test needs more yet")
        if (address, port) in self.servers:
            raise ValueError(f"an MX server already listens on {address}:{port}")
        if tcp_accepts(address, port, 0.2):   # the master would die on the failed bind
            raise RuntimeError(f"something already accepts on {address}:{port}")
        # Key, then its certificate chain, in one file (smtpd_tls_chain_files). smtpd reads it as
        # root before it drops privileges, so it stays 0600 root.
        pem = self.tls / f"{host}.{cert}.pem"
        self.tls.mkdir(parents=True, exist_ok=True)
        pem.write_bytes(Path(key).read_bytes() + Path(chain).read_bytes())
        os.chmod(pem, 0o600)
        srv = MxServer(self, host, address, port, cert, starttls, pem)
        self.servers[(address, port)] = srv
        want = f"{host} ESMTP Postfix"
        try:
            self._apply()
            # A certificate smtpd cannot load still gets STARTTLS offered (then 454), so a
            # STARTTLS server is ready only when a handshake works.
            wait_until(lambda: smtp_greeting(address, port, starttls) == want, timeout,
                       interval=0.05, what=f"Postfix smtpd on {address}:{port}")
        except TimeoutError:
            del self.servers[(address, port)]
            raise self._failure(f"smtpd for {host} on {address}:{port}") from None
        except BaseException:
            del self.servers[(address, port)]
            raise
        return srv

    def remove(self, srv, timeout=5.0):
        if self.servers.get((srv.address, srv.port)) is not srv:
            return
        del self.servers[(srv.address, srv.port)]
        if self.running:
            self._apply()
            wait_until(lambda: not tcp_accepts(srv.address, srv.port, 0.2), timeout,
                       what=f"{srv.address}:{srv.port} to close")

    def _pids(self):
        """The master and every process under it (from its pid file and /proc, never by name)."""
        try:
            master = int((self.queue / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        pids, todo = [], [master]
        while todo:
            pid = todo.pop()
            if _pid_alive(pid):
                pids.append(pid)
                todo += _child_pids(pid)
        return pids

    def stop(self, timeout=5.0):
        if not self.running:
            return
        pids = self._pids()
        # postfix stop: SIGTERM to the master, which ends its children; it polls once a second.
        rc = self._postfix("stop", timeout=timeout + 10)
        try:
            wait_until(lambda: not any(_pid_alive(p) for p in pids), timeout,
                       what="the Postfix processes to end")
        except TimeoutError:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.running = False
        self.log(f"postfix stopped rc={rc} ({len(pids)} processes)")

    def log_text(self):
        try:
            return self.maillog.read_text(errors="replace")
        except OSError:
            return ""


# ================================================================================================
# the daemon under test (or a stand-in)
# ================================================================================================

class Daemon:
    """A process started by World.daemon(): pid, config_path, log_path, stop(), signal(), reload()."""

    def __init__(self, proc, name, config_path, log_path, listen):
        self.proc = proc
        self.name = name
        self.config_path = config_path
        self.log_path = log_path
        self.listen = listen

    @property
    def pid(self):
        return self.proc.pid

    @property
    def returncode(self):
        return self.proc.poll()

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def reload(self):
        self.signal(signal.SIGHUP)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=5.0):
        return terminate(self.proc, signal.SIGTERM, timeout)

    def log_text(self):
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""


def default_daemon_binary():
    """$MTASTSD, else the first of build/mtastsd, ./mtastsd under the source tree."""
    env = os.environ.get("MTASTSD")
    if env:
        return env
    for cand in (TOP_SRCDIR / "build" / "mtastsd", TOP_SRCDIR / "mtastsd"):
        if cand.exists():
            return str(cand)
    return str(TOP_SRCDIR / "build" / "mtastsd")


# ================================================================================================
# the world
# ================================================================================================

class World:
    """The integration test world. See the module docstring and tests/world/README.md."""

    def __init__(self, workdir=None, *, dns_address="127.0.0.1", dns_port=53, https_port=443,
                 special_address=SPECIAL_ADDRESS, ipv6=None, allow_host_net=False):
        if workdir is None:
            workdir = tempfile.mkdtemp(prefix="mtasts-world.")
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ipv6 = ipv6_loopback_usable() if ipv6 is None else ipv6
        self.allow_host_net = allow_host_net
        self.specs = {}
        self.ca = Ca(self.workdir / "ca")
        self.dns = Dns(self.workdir / "dns", dns_address, dns_port, log=self._log)
        self.nginx = Nginx(self.workdir / "https", self.ca, https_port, self.ipv6, log=self._log)
        self.pytls = None
        self.mx = None              # PostfixMx, made by the first add_mx_server()
        self.special_address = special_address
        self.https_port = https_port
        self.daemons = []
        self.started = False
        self._batch = 0
        self._dirty = False
        self._dirty_https = False
        self._nginx_since = 0
        self._pytls_since = 0
        self._dns_since = 0
        (self.workdir / "postfix").mkdir(exist_ok=True)
        (self.workdir / "postfix" / "main.cf").write_text(
            "# main.cf: just enough for postmap -c (written by world.py)\n"
            "compatibility_level = 3.6\n"
            f"meta_directory = {self.workdir / 'postfix'}\n")

    # ---- bookkeeping --------------------------------------------------------------------------
    def _log(self, msg):
        with open(self.workdir / "world.log", "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d} {msg}\n")

    @property
    def ca_file(self):
        return self.ca.ca_file

    @property
    def dns_server(self):
        return self.dns.server

    @property
    def postfix_config_dir(self):
        return str(self.workdir / "postfix")

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout=15.0):
        if self.started:
            return self
        privileged = self.dns.port < 1024 or self.https_port < 1024
        if privileged and not self.allow_host_net and os.environ.get("NETNS_RUN_INSIDE") != "1":
            raise RuntimeError("refusing to bind ports 53/443 outside a private network namespace; "
                               "run under tests/world/netns-run (or pass allow_host_net=True)")
        self._log(f"start workdir={self.workdir}")
        self.ca.ensure()
        try:
            for spec in self.specs.values():
                self._materialise(spec)
            self.dns.start(timeout)
            self.nginx.start(list(self.specs.values()), timeout)
            self.pytls = PyTlsServer(self, self.special_address, self.https_port)
            self.pytls.start()
        except BaseException:
            self.stop()
            raise
        self.started = True
        return self

    def stop(self, timeout=5.0):
        """Stop everything this world started (daemons first), each bounded by timeout s. Safe to
        call twice. Logs stay in workdir."""
        t0 = time.monotonic()
        for d in self.daemons:
            if d.proc.returncode is None:
                rc = d.stop(timeout)
                self._log(f"daemon {d.name} pid={d.pid} stopped rc={rc}")
        if self.pytls is not None and not self.pytls.stop_event.is_set():
            self.pytls.stop(timeout)
            self._log("python TLS server stopped")
        if self.mx is not None:
            self.mx.stop(timeout)
        self.nginx.stop(timeout)
        self.dns.stop(timeout)
        if self.started:
            self._log(f"stopped in {time.monotonic() - t0:.2f}s")
        self.started = False

    def batch(self):
        """with world.batch(): several changes, one DNS apply and one nginx reload at the end."""
        world = self

        class _Batch:
            def __enter__(self):
                world._batch += 1
                return world

            def __exit__(self, *exc):
                world._batch -= 1
                if world._batch == 0 and world._dirty and exc[0] is None:
                    world._apply(True)
        return _Batch()

    def _apply(self, https):
        if self._batch:
            self._dirty = True
            self._dirty_https = self._dirty_https or https
            return
        https = https or self._dirty_https
        self._dirty = self._dirty_https = False
        if not self.started:
            return
        self.dns.apply()
        if https:
            self.nginx.reload(list(self.specs.values()))

    # ---- domains ------------------------------------------------------------------------------
    def _dns_for(self, spec, remove=False):
        """Write (or remove) the DNS records a spec implies."""
        d = spec.domain
        keys = [(f"{d}.", "MX"), (f"_mta-sts.{d}.", None), (f"nodata._mta-sts.{d}.", "TXT"),
                (f"{spec.policy_host}.", "A"), (f"{spec.policy_host}.", "AAAA"),
                (f"_smtp._tls.{d}.", "TXT")]
        keys += [(spec.txt_owner, "TXT"), (f"nodata.{spec.txt_owner}", "TXT")]
        for pref, host in (spec.mx or []):
            if host not in (".", "") and _fqdn(host).endswith(f".{d}."):
                keys.append((_fqdn(host), "A"))
        for owner, rtype in keys:
            self.dns.del_rrset(owner, rtype)
        self.dns.set_fail(f"_mta-sts.{d}", None)
        if remove:
            return
        self.dns.add_zone(d, spec.neg_ttl)
        if spec.mx:
            self.dns.set_rrset(d, "MX", spec.mx_ttl,
                               [f"{int(p)} {_fqdn(h) if h not in ('.', '') else '.'}" for p, h in spec.mx])
            for _pref, host in spec.mx:
                if host not in (".", "") and _fqdn(host).endswith(f".{d}."):
                    self.dns.set_rrset(host, "A", spec.host_ttl, ["127.0.0.1"])
        if spec.txt_cname:
            self.dns.set_rrset(f"_mta-sts.{d}", "CNAME", spec.txt_ttl, [_fqdn(spec.txt_cname)])
        self._set_txt_records(spec, spec.txt)
        v4 = [a for a in spec.addresses if ":" not in a]
        v6 = [a for a in spec.addresses if ":" in a]
        self.dns.set_rrset(spec.policy_host, "A", spec.host_ttl, v4)
        self.dns.set_rrset(spec.policy_host, "AAAA", spec.host_ttl, v6)
        if spec.tlsrpt is not None:
            self.dns.set_rrset(f"_smtp._tls.{d}", "TXT", spec.txt_ttl,
                               [txt_rdata(r) for r in ([spec.tlsrpt] if isinstance(spec.tlsrpt, str)
                                                       else spec.tlsrpt)])
        if spec.servfail:
            self.dns.set_fail(f"_mta-sts.{d}", spec.servfail)

    def _set_txt_records(self, spec, records):
        owner = spec.txt_owner
        self.dns.del_rrset(owner, "TXT")
        self.dns.del_rrset(f"nodata.{owner}", "TXT")
        if records is None:
            return
        if len(records) == 0:   # NODATA: the name exists (an empty non-terminal), no TXT at it
            self.dns.set_rrset(f"nodata.{owner}", "TXT", spec.txt_ttl, ['"placeholder"'])
            return
        self.dns.set_rrset(owner, "TXT", spec.txt_ttl, [txt_rdata(r) for r in records])

    def _materialise(self, spec):
        self._dns_for(spec)
        if spec.served_by == "nginx" or spec.served_by == "python":
            self.ca.leaf(spec.policy_host, spec.cert)
        self.nginx.write_body(spec)

    def add_mx_server(self, host, address, *, cert="good", starttls=True, port=25):
        """A real Postfix smtpd for MX host at address:port (STARTTLS with a world certificate of
        kind cert for host, or no STARTTLS at all), and host's A record pointing there. Returns
        an MxServer (host, address, port, cert, starttls, stop()) once the banner is Postfix's."""
        chain, key = self.ca.leaf(host, cert)
        if self.mx is None:
            self.mx = PostfixMx(self.workdir / "mx", log=self._log)
        srv = self.mx.add(host, address, port, chain, key, starttls, cert)
        self.set_records(host, "A", [address])
        self._log(f"postfix smtpd for {host} at {address}:{port} cert={cert} starttls={starttls}")
        return srv

    def add_domain(self, domain, **kw):
        """Configure DNS and HTTPS for domain (see README for every option). Re-adding a domain
        replaces its configuration."""
        spec = DomainSpec(domain, **kw)
        old = self.specs.get(spec.domain)
        if old is not None:
            self._dns_for(old, remove=True)
        self.specs[spec.domain] = spec
        self._materialise(spec)
        self._log(f"add_domain {spec.domain} " + " ".join(
            f"{k}={getattr(spec, k)!r}" for k in DomainSpec.FIELDS if k not in ("policy",)))
        self._apply(True)
        return spec

    def update_domain(self, domain, **changes):
        """Change some options of an existing domain; everything else stays."""
        spec = self.specs[_norm_domain(domain)]
        return self.add_domain(spec.domain, **{k: getattr(spec, k) for k in DomainSpec.FIELDS} | changes)

    def remove_domain(self, domain):
        spec = self.specs.pop(_norm_domain(domain))
        self._dns_for(spec, remove=True)
        self.dns.zones.pop(_fqdn(spec.domain), None)
        self._apply(True)

    def set_txt(self, domain, records, *, ttl=None):
        """Replace the _mta-sts TXT RRs (at the CNAME target if the domain has txt_cname).
        records: list of RRs (str, or list of strings for one multi-string RR); [] = NODATA;
        None = no name (NXDOMAIN)."""
        spec = self.specs[_norm_domain(domain)]
        changes = {"txt": records}
        if ttl is not None:
            changes["txt_ttl"] = ttl
        new = spec.copy(**changes)
        self.specs[spec.domain] = new
        self._set_txt_records(new, records)
        if new.txt_cname:
            self.dns.set_rrset(f"_mta-sts.{new.domain}", "CNAME", new.txt_ttl, [_fqdn(new.txt_cname)])
        self._log(f"set_txt {spec.domain} {records!r}")
        self._apply(False)

    def remove_txt(self, domain):
        self.set_txt(domain, None)

    def set_policy(self, domain, text):
        """Rewrite the served policy file (no reload); None removes it (404)."""
        spec = self.specs[_norm_domain(domain)]
        new = spec.copy(policy=text)
        self.specs[spec.domain] = new
        self.nginx.write_body(new)
        self._log(f"set_policy {spec.domain}")

    def dns_fail(self, name, mode="servfail"):
        """Make queries for name (and below) fail: 'servfail', 'timeout' (dropped) or 'refused';
        None clears it."""
        self.dns.set_fail(name, mode)
        self._log(f"dns_fail {name} {mode}")
        self._apply(False)

    def set_records(self, owner, rtype, rdatas, ttl=300):
        """Raw DNS: replace the rtype RRset at owner with zone-file rdata strings ([] removes it).
        For TXT use txt_rdata() to build rdata."""
        self.dns.set_rrset(owner, rtype, ttl, rdatas)
        self._log(f"set_records {owner} {rtype} {rdatas!r}")
        self._apply(False)

    def add_zone(self, apex, neg_ttl=60):
        """Make apex a zone of its own (its own SOA for negative answers below it)."""
        self.dns.add_zone(apex, neg_ttl)
        self._apply(False)

    # ---- observation --------------------------------------------------------------------------
    def requests(self, domain=None):
        """Requests seen by nginx and the Python TLS server since the last reset_counts(), as
        dicts (msec, server, sni, host, method, uri, status, bytes, request_time, tls, ua,
        if_none_match, if_modified_since, ...). Filter: Host or SNI equal to mta-sts.<domain>.
        nginx logs a request when it completes (a stalled one when the client gives up)."""
        entries = self.nginx.entries(self._nginx_since)
        if self.pytls is not None:
            with self.pytls.lock:
                entries += [dict(e) for e in self.pytls.entries[self._pytls_since:]]
        if domain is None:
            return entries
        host = f"mta-sts.{_norm_domain(domain)}"
        return [e for e in entries if e.get("host") == host or (e.get("sni") or "").lower() == host]

    def request_count(self, domain):
        return len(self.requests(domain))

    def wait_request_count(self, domain, n, timeout=5.0):
        """Wait until request_count(domain) >= n; returns the count."""
        return wait_until(lambda: self.request_count(domain) >= n and self.request_count(domain),
                          timeout, what=f"{n} request(s) for {domain}")

    def handshake_count(self, domain):
        """TLS ClientHellos with SNI mta-sts.<domain> seen by the Python TLS server (only domains
        it serves, server='python'), since the last reset_counts()."""
        if self.pytls is None:
            return 0
        with self.pytls.lock:
            return self.pytls.handshakes[f"mta-sts.{_norm_domain(domain)}"]

    def dns_queries(self, name=None, qtype=None):
        """Client queries unbound logged since the last reset_counts(): [(client, name, type)]."""
        return self.dns.queries(name, qtype, self._dns_since)

    def reset_counts(self):
        self._nginx_since = self.nginx.log_size()
        self._dns_since = self.dns.log_size()
        if self.pytls is not None:
            with self.pytls.lock:
                self._pytls_since = len(self.pytls.entries)
                self.pytls.handshakes.clear()

    # ---- clients ------------------------------------------------------------------------------
    def url(self, domain):
        return f"https://mta-sts.{_norm_domain(domain)}/.well-known/mta-sts.txt"

    def address_of(self, domain):
        return self.specs[_norm_domain(domain)].addresses[0]

    def curl_args(self, domain):
        """Arguments that make curl reach the world's server for domain, trusting the world CA."""
        d = _norm_domain(domain)
        addr = self.address_of(d) if d in self.specs else "127.0.0.1"
        addr = f"[{addr}]" if ":" in addr else addr
        return ["--resolve", f"mta-sts.{d}:{self.https_port}:{addr}", "--cacert", self.ca_file]

    def https_get(self, domain, *, path="/.well-known/mta-sts.txt", timeout=5.0,
                  check_common_name=False, address=None, tls_max=None):
        """GET with Python's ssl (SNI and Host mta-sts.<domain>, world CA, no CN fallback unless
        check_common_name). Returns (status, headers dict lower-cased, body bytes); raises
        ssl.SSLCertVerificationError, TimeoutError, ... as the client would see them."""
        d = _norm_domain(domain)
        host = f"mta-sts.{d}"
        addr = address or (self.address_of(d) if d in self.specs else "127.0.0.1")
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.hostname_checks_common_name = check_common_name
        if tls_max is not None:
            ctx.maximum_version = tls_max
        deadline = time.monotonic() + timeout
        raw = socket.create_connection((addr, self.https_port), timeout=timeout)
        try:
            tls = ctx.wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise
        conn = http.client.HTTPConnection(host, self.https_port, timeout=timeout)
        conn.sock = tls
        try:
            conn.request("GET", path, headers={"Host": host, "User-Agent": "world-selftest"})
            resp = conn.getresponse()
            body = b""
            while True:
                try:   # http.client may have closed its reference already (Connection: close)
                    tls.settimeout(max(0.05, deadline - time.monotonic()))
                except OSError:
                    pass
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"body not complete within {timeout}s ({len(body)} bytes)")
                chunk = resp.read(65536)
                if not chunk:
                    break
                body += chunk
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
        except socket.timeout:
            raise TimeoutError(f"no complete response within {timeout}s") from None
        finally:
            conn.close()

    def dns_query(self, name, qtype="A", timeout=2.0, tcp=False):
        return dns_query(name, qtype, self.dns_server, timeout, tcp)

    def postmap_query(self, key, map_spec, timeout=120.0, postmap=None):
        """Run the real postmap -q KEY MAP with the world's minimal Postfix config dir.
        Returns PostmapResult (exit_code, stdout) with .stderr."""
        exe = postmap or shutil.which("postmap") or "/usr/sbin/postmap"
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
        p = subprocess.run([exe, "-c", self.postfix_config_dir, "-q", key, map_spec],
                           capture_output=True, text=True, timeout=timeout, env=env,
                           stdin=subprocess.DEVNULL)
        return PostmapResult(p.returncode, p.stdout, p.stderr)

    @staticmethod
    def socketmap_query(host, port, name, key, timeout=10.0):
        return socketmap_query(host, port, name, key, timeout)

    @staticmethod
    def socketmap_raw(host, port, data, timeout=2.0, half_close=False):
        return socketmap_raw(host, port, data, timeout, half_close)

    # ---- the daemon ---------------------------------------------------------------------------
    def daemon(self, config_text, *, binary=None, cmd=None, listen=("127.0.0.1", 8461),
               ready_timeout=10.0, env=None, name="mtastsd", ready=None):
        """Write config_text to <workdir>/<name>.conf, start `binary -f -c <file>` (or cmd, a list in
        which "{config}" is replaced), log to <workdir>/<name>.log, and return a Daemon once
        listen accepts connections (listen: (host, port), or a unix socket path). ready, if given,
        is a callable(Daemon) -> bool used instead of the connect check. Raises RuntimeError with
        the log's tail if the process exits or is not ready within ready_timeout s."""
        if ready is None:
            busy = tcp_accepts(listen, None, 0.2) if isinstance(listen, str) else \
                tcp_accepts(listen[0], listen[1], 0.2)
            if busy:
                raise RuntimeError(f"something already accepts on {listen}; stop it first "
                                   "(the readiness check would mean nothing)")
        conf = self.workdir / f"{name}.conf"
        conf.write_text(config_text)
        log = self.workdir / f"{name}.log"
        if cmd is None:
            cmd = [binary or default_daemon_binary(), "-f", "-c", "{config}"]
        argv = [str(a).replace("{config}", str(conf)) for a in cmd]
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = spawn(argv, log, env=full_env, cwd=str(self.workdir))
        d = Daemon(proc, name, str(conf), str(log), listen)
        self.daemons.append(d)
        self._log(f"daemon {name} pid={proc.pid}: {' '.join(argv)}")
        if ready is None:
            if isinstance(listen, str):
                ready = lambda _d: tcp_accepts(listen, None, 0.2)   # noqa: E731
            else:
                ready = lambda _d: tcp_accepts(listen[0], listen[1], 0.2)   # noqa: E731
        try:
            wait_until(lambda: proc.poll() is not None or ready(d), ready_timeout,
                       what=f"{name} to accept on {listen}")
        except TimeoutError:
            d.stop()
            raise RuntimeError(f"{name} not ready within {ready_timeout}s:\n{tail(log)}") from None
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with status {proc.returncode}:\n{tail(log)}")
        return d
