#!/usr/bin/env python3
"""bench.py: mtastsd benchmark: cached, cold, isolation and memory scenarios against the test world.

Runs itself under tests/world/netns-run (a private network namespace; needs root; exit 77 = SKIP)
when started outside it. The daemon and the ceiling server (fixed_socketmap) are pinned to one
CPU, everything else (this script, the load generator, unbound, nginx) to the other. The daemon's
CPU time (utime+stime, /proc/PID/stat) and RSS (VmRSS, /proc/PID/status) are read around every
scenario. Prints a table, then the targets with PASS/FAIL; --json writes every figure.

    bench.py [--quick] [--duration S] [--only cached,cold,isolation,memory] [--workdir DIR]
             [--daemon PATH] [--load PATH] [--fixed PATH] [--json FILE] [--cpus D,L] [--no-gdb]

Scenarios: cached (a 50/50 mix of policy and no-policy domains, all cached, at K=1, 8, 64,
daemon against the fixed-answer ceiling; then policy-only and no-policy-only at K=8), cold (new
domains on 32 connections: 5,000 mixed, then 1,000 with and 1,000 without a policy), isolation
(cached K=8 while a cold stream runs on 32 more connections) and memory (RSS and malloc heap
before and after 100,000 policies, on a fresh daemon; again with dns.cache_size=0).

How the bench domains are published (world.add_domain() makes one auth-zone, one certificate and
one nginx server block per domain, which is too slow for 100,000 domains):
  - DNS: one zone, bench.test, in the world's unbound (World.add_zone plus the world's Dns record
    store, filled before World.start so unbound loads it once). A domain with a policy, pN, gets
    "_mta-sts.pN.bench.test TXT v=STSv1; id=1;" and "mta-sts.pN.bench.test A 127.0.0.3"; a domain
    without MTA-STS, nN, gets nothing (NXDOMAIN). TTLs and the zone's negative TTL are 86400 s.
  - HTTPS: a second nginx, started by this script, on 127.0.0.3:443 (loopback; the world's nginx
    keeps 127.0.0.1:443). A wildcard cannot cover mta-sts.<d> for many d, so policy hosts are
    grouped: each group of SAN_PER_CERT names shares one certificate with those names as SANs,
    signed by the world's intermediate CA (the chain the daemon verifies against the world's
    root, fetch.ca_file). One server block per group; every host serves the same enforce policy
    "mx: mx1.<domain>", built by nginx from $host. Certificates are made with the openssl CLI
    (about 30 ms each) and kept under WORKDIR/bench-certs, so a rerun with --workdir reuses them.
"""

import argparse
import hashlib
import json
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP = HERE.parent.parent
WORLD_DIR = TOP / "tests" / "world"
sys.path.insert(0, str(WORLD_DIR))

if __name__ == "__main__" and os.environ.get("NETNS_RUN_INSIDE") != "1":
    netns_run = str(WORLD_DIR / "netns-run")
    os.execv(netns_run, [netns_run, sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]])

import world as W  # noqa: E402

ZONE = "bench.test"
POLICY_ADDRESS = "127.0.0.3"  # the bench nginx; the world's own servers use .1 and .2
DAEMON_PORT = 8461
CEILING_PORT = 8471
MAP = "postfix"
TTL = 86400
CLK_TCK = os.sysconf("SC_CLK_TCK")

# name prefix -> certificate group size (SANs per certificate)
SAN_PER_CERT = {"cp": 16, "kp": 16, "sp": 16, "ip": 32, "mp": 250}

SCENARIOS = ("cached", "cold", "isolation", "memory")
# RSS is read once the daemon has been idle this long: it gives freed heap pages back to the
# system on a 2 s timer after a burst of fetches ends (daemon_on_trim in src/daemon/main.c), and
# reading it sooner measures the burst's garbage or not depending on the timer's phase.
SETTLE_S = 3.0
# The load generator shares its CPU with the test servers. Above them in priority, it times the
# daemon's answers rather than its own wait behind nginx's TLS handshakes: with the cold stream
# running, nginx alone can keep that CPU 90% busy.
LOAD_NICE = -10

# duration: seconds per timed run; slice: daemon and ceiling alternate in slices this long;
# cold/split/iso_keys/mem/mem0: domains in each set (mem0: the dns.cache_size=0 memory run).
FULL = dict(duration=10.0, slice=2.5, warmup=0.5, cached_keys=1000, cold=5000, split=1000,
            iso_keys=30000, mem=100000, mem0=100000, mem_warm=256)
QUICK = dict(duration=2.0, slice=2.0, warmup=0.5, cached_keys=1000, cold=1000, split=300,
             iso_keys=8000, mem=10000, mem0=5000, mem_warm=256)

TARGETS = dict(cached_ratio=0.9, p99_k8_ms=0.2, cold_cpu_ms=0.25, iso_p99_ms=1.0, iso_max_ms=10.0,
               mem_bytes=300)


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ================================================================================================
# process facts
# ================================================================================================

def proc_cpu(pid):
    """utime+stime of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss(pid):
    """VmRSS in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


EPOLL_SYSCALLS = {"232", "281", "441"}  # x86_64 epoll_wait, epoll_pwait, epoll_pwait2


def wait_in_epoll(pid, limit):
    """True once pid has been seen blocked in epoll_wait three times in a row (within limit s)."""
    deadline = time.monotonic() + limit
    seen = 0
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/syscall") as f:
                nr = f.read().split(" ", 1)[0].strip()
        except OSError:
            return False
        seen = seen + 1 if nr in EPOLL_SYSCALLS else 0
        if seen >= 3:
            return True
        time.sleep(0.05)
    return False


def child_pids(pid):
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def cpu_busy(cpus):
    """Busy jiffies (all but idle and iowait) of each CPU in cpus, from /proc/stat, in seconds."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            name = line.split(" ", 1)[0]
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                v = [int(x) for x in line.split()[1:]]
                out[int(name[3:])] = (sum(v[:8]) - v[3] - v[4]) / CLK_TCK
    return out


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Sample:
    """Around one run: the server's CPU time and RSS, both CPUs' busy time (everything that ran
    on them, ours or not) and the CPU time of the children we waited for (the load generator)."""

    cpus = (0, 1)

    def __init__(self, pid):
        self.pid = pid
        self.cpu0 = proc_cpu(pid)
        self.rss0 = proc_rss(pid)
        self.busy0 = cpu_busy(self.cpus)
        self.kids0 = children_cpu()
        self.t0 = time.monotonic()
        self.cpu = self.rss = self.wall = self.busy = self.kids = None

    def stop(self):
        self.cpu = proc_cpu(self.pid) - self.cpu0
        self.rss = proc_rss(self.pid)
        self.wall = time.monotonic() - self.t0
        busy = cpu_busy(self.cpus)
        self.busy = {c: busy[c] - self.busy0[c] for c in busy}
        self.kids = children_cpu() - self.kids0
        return self

    def annotate(self, r):
        """Adds the server's and the machine's figures to a load result."""
        r["server_cpu_s"] = self.cpu
        r["server_cpu_us_per_req"] = self.cpu * 1e6 / r["requests"] if r["requests"] else None
        r["server_util"] = self.cpu / self.wall if self.wall else None
        r["load_util"] = self.kids / self.wall if self.wall else None
        r["cpu_busy"] = {str(c): b / self.wall for c, b in self.busy.items()} if self.wall else {}
        r["wall_s"] = self.wall
        r["rss"] = self.rss
        return r


def hist_quantile(hist, n, mx, q):
    rank = max(1, math.ceil(q * n))
    seen = 0
    for upper, count in hist:
        seen += count
        if seen >= rank:
            return min(upper, mx)
    return mx


def merge_runs(runs):
    """One result from several load runs of the same kind (needs --dump-hist)."""
    out = dict(runs[-1])
    out["rounds"] = len(runs)
    for key in ("requests", "elapsed_s", "server_cpu_s", "wall_s"):
        out[key] = sum(r.get(key) or 0 for r in runs)
    out["rps"] = out["requests"] / out["elapsed_s"] if out["elapsed_s"] else 0.0
    for key in ("replies", "errors"):
        out[key] = {k: sum(r[key][k] for r in runs) for k in runs[0][key]}
    out["ok_ratio"] = out["replies"]["ok"] / out["requests"] if out["requests"] else 0.0
    merged = {}
    for r in runs:
        for upper, count in r["hist_ns"]:
            merged[upper] = merged.get(upper, 0) + count
    hist = sorted(merged.items())
    n = sum(merged.values())
    mx = max(r["max_ns"] for r in runs)
    lat = {"n": n, "mean": sum(r["sum_ns"] for r in runs) / n / 1000 if n else 0.0,
           "max": mx / 1000}
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)):
        lat[name] = hist_quantile(hist, n, mx, q) / 1000
    out["lat_us"] = {"all": lat, "rounds": [r["lat_us"] for r in runs]}
    out["hist_ns"] = hist
    out["max_ns"] = mx
    w = out["wall_s"]
    out["server_cpu_us_per_req"] = out["server_cpu_s"] * 1e6 / out["requests"] if out["requests"] else None
    out["server_util"] = out["server_cpu_s"] / w if w else None
    out["load_util"] = sum((r.get("load_util") or 0) * (r.get("wall_s") or 0) for r in runs) / w if w else None
    out["cpu_busy"] = {c: sum(r["cpu_busy"][c] * r["wall_s"] for r in runs) / w for c in runs[0]["cpu_busy"]}
    out["sane"] = all(r["sane"] for r in runs)
    return out


# ================================================================================================
# tools: the load generator and the ceiling server
# ================================================================================================

def build_tools(args, bindir):
    """Paths of load and fixed_socketmap: given, next to this script (make), or compiled here."""
    out = {}
    libs = {"load": ["-lm"], "fixed_socketmap": ["-lm"], "tls_floor": ["-lssl", "-lcrypto"]}
    for name, flag in (("load", args.load), ("fixed_socketmap", args.fixed), ("tls_floor", None)):
        if flag:
            out[name] = flag
            continue
        for cand in (Path.cwd() / "tests" / "bench" / name, HERE / name):
            if cand.is_file() and os.access(cand, os.X_OK) and \
                    cand.stat().st_mtime >= (HERE / f"{name}.c").stat().st_mtime:
                out[name] = str(cand)
                break
        else:
            bindir.mkdir(parents=True, exist_ok=True)
            exe = bindir / name
            cc = os.environ.get("CC", "cc")
            cmd = [cc, "-std=c17", "-O2", "-Wall", "-Wextra", "-D_POSIX_C_SOURCE=200809L", "-o",
                   str(exe), str(HERE / f"{name}.c"), *libs[name]]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if p.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)}:\n{p.stderr}")
            out[name] = str(exe)
    return out


class Load:
    """Runs the load generator (on this script's CPU) and returns its JSON line as a dict."""

    def __init__(self, exe):
        self.exe = exe

    def argv(self, port, keyfile, conns, *, duration=None, requests=None, warmup=0.0, cold=False,
             expect_ok=None, tolerance=None, label=None, max_errors=0, hist=False):
        a = ["nice", "-n", str(LOAD_NICE), self.exe, "-q", "-a", f"127.0.0.1:{port}", "-m", MAP,
             "-k", str(keyfile),
             "-c", str(conns), "--max-errors", str(max_errors)]
        if duration is not None:
            a += ["-d", f"{duration:g}"]
        if requests is not None:
            a += ["-n", str(requests)]
        if warmup:
            a += ["-w", f"{warmup:g}"]
        if cold:
            a.append("--cold")
        if expect_ok is not None:
            a += ["--expect-ok-ratio", f"{expect_ok:g}"]
        if tolerance is not None:
            a += ["--tolerance", f"{tolerance:g}"]
        if label:
            a += ["--label", label]
        if hist:
            a.append("--dump-hist")
        return a

    def start(self, *a, **kw):
        return subprocess.Popen(self.argv(*a, **kw), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, stdin=subprocess.DEVNULL)

    @staticmethod
    def finish(p, timeout):
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            raise RuntimeError(f"load generator still running after {timeout:.0f}s") from None
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if p.returncode not in (0, 1) or not lines:
            raise RuntimeError(f"load generator failed (rc={p.returncode}): {err.strip()}")
        res = json.loads(lines[-1])
        if not res["sane"]:
            log(f"WARNING: sanity check failed: {lines[-1]}")
        return res

    def run(self, *a, timeout=None, **kw):
        p = self.start(*a, **kw)
        limit = timeout or ((kw.get("duration") or 0) + (kw.get("warmup") or 0) + 60)
        return self.finish(p, limit)


# ================================================================================================
# the bench domains: DNS records in the world's unbound, HTTPS on a second nginx
# ================================================================================================

def domain(prefix, i):
    return f"{prefix}{i}.{ZONE}"


class Sites:
    """Publishes positive (policy) domains; negative ones need nothing (NXDOMAIN)."""

    def __init__(self, w, workdir):
        self.w = w
        self.dir = Path(workdir) / "bench-https"
        self.certdir = Path(workdir) / "bench-certs"
        self.groups = []   # (chain path, [policy hosts])
        self.proc = None
        self.count = 0

    def publish_dns(self, domains):
        """Before World.start(): records go into the world's store; unbound loads them at start."""
        txt = [W.txt_rdata("v=STSv1; id=1;")]
        for d in domains:
            self.w.dns.set_rrset(f"_mta-sts.{d}", "TXT", TTL, txt)
            self.w.dns.set_rrset(f"mta-sts.{d}", "A", TTL, [POLICY_ADDRESS])
        self.count += len(domains)

    def make_certs(self, domains, per_cert, parallel=2):
        ca = self.w.ca.ensure()
        self.certdir.mkdir(parents=True, exist_ok=True)
        csr = self.certdir / "leaf.csr"
        if not csr.exists():
            subprocess.run(["openssl", "req", "-new", "-key", ca.key_file, "-subj", "/CN=mtastsd bench",
                            "-out", str(csr)], check=True, capture_output=True, timeout=30)
        int_pem = Path(ca.intermediate_file).read_text()
        fp = hashlib.sha256(int_pem.encode()).hexdigest()[:16]
        todo, running = [], []
        for i in range(0, len(domains), per_cert):
            hosts = [f"mta-sts.{d}" for d in domains[i:i + per_cert]]
            tag = hashlib.sha256((fp + " " + " ".join(hosts)).encode()).hexdigest()[:24]
            chain = self.certdir / f"{tag}.chain.pem"
            self.groups.append((str(chain), hosts))
            if not chain.exists():
                todo.append((chain, hosts))
        for chain, hosts in todo:
            while len(running) >= parallel:
                self._reap(running.pop(0), int_pem)
            ext = chain.with_suffix(".ext")
            ext.write_text("[leaf]\nbasicConstraints = critical,CA:FALSE\n"
                           "keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n"
                           "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
                           "subjectAltName = " + ",".join(f"DNS:{h}" for h in hosts) + "\n")
            leaf = chain.with_suffix(".leaf")
            serial = "0x" + os.urandom(12).hex()
            p = subprocess.Popen(["openssl", "x509", "-req", "-in", str(csr), "-CA", ca.intermediate_file,
                                  "-CAkey", str(ca.dir / "int.key"), "-set_serial", serial,
                                  "-days", "30", "-extfile", str(ext), "-extensions", "leaf",
                                  "-out", str(leaf)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            running.append((p, chain, leaf))
        for r in running:
            self._reap(r, int_pem)
        return len(todo)

    @staticmethod
    def _reap(r, int_pem):
        p, chain, leaf = r
        _, err = p.communicate(timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"openssl x509 for {chain.name}: {err.decode(errors='replace')}")
        tmp = chain.with_suffix(".tmp")
        tmp.write_text(leaf.read_text() + int_pem)
        tmp.rename(chain)
        leaf.unlink()

    def nginx_conf(self):
        d = self.dir
        key = self.w.ca.key_file
        out = ["# nginx.conf: bench.py's policy server for *.bench.test hosts", "daemon off;",
               "master_process on;", "worker_processes 1;", f"pid {d}/nginx.pid;",
               f"error_log {d}/error.log warn;"]
        if os.geteuid() == 0:
            out.append("user root root;")
        out += ["events { worker_connections 8192; }", "http {", "  types { }",
                "  default_type text/plain;", "  access_log off;",
                *[f"  {t}_temp_path {d}/tmp/{t};" for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")],
                "  ssl_protocols TLSv1.2 TLSv1.3;", "  keepalive_timeout 10s;",
                "  server_names_hash_max_size 1048576;", "  server_names_hash_bucket_size 128;",
                r'  map $host $sts_domain { ~^mta-sts\.(?<d>.+)$ $d; default ""; }',
                "  server {", f"    listen {POLICY_ADDRESS}:443 ssl default_server;",
                "    server_name _;", f"    ssl_certificate {self.groups[0][0]};",
                f"    ssl_certificate_key {key};", "    return 421;", "  }"]
        body = r'"version: STSv1\nmode: enforce\nmx: mx1.$sts_domain\nmax_age: 86400\n"'
        for chain, hosts in self.groups:
            out += ["  server {", f"    listen {POLICY_ADDRESS}:443 ssl;"]
            for i in range(0, len(hosts), 50):
                out.append("    server_name " + " ".join(hosts[i:i + 50]) + ";")
            out += [f"    ssl_certificate {chain};", f"    ssl_certificate_key {key};",
                    f"    location = /.well-known/mta-sts.txt {{ return 200 {body}; }}",
                    "    location / { return 404; }", "  }"]
        out.append("}")
        return "\n".join(out) + "\n"

    def start(self, timeout=120.0):
        for sub in ("tmp",):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        conf = self.dir / "nginx.conf"
        conf.write_text(self.nginx_conf())
        cmd = ["nginx", "-p", f"{self.dir}/", "-c", str(conf), "-e", str(self.dir / "error.log")]
        self.proc = W.spawn(cmd, self.dir / "nginx.stderr")
        W.wait_until(lambda: self.proc.poll() is not None or W.tcp_accepts(POLICY_ADDRESS, 443),
                     timeout, what="the bench nginx to listen")
        if self.proc.poll() is not None:
            raise RuntimeError("bench nginx exited:\n" + W.tail(self.dir / "error.log"))

    def stop(self):
        if self.proc is not None:
            W.terminate(self.proc, signal.SIGTERM, 5.0, extra_pids=child_pids(self.proc.pid))


# ================================================================================================
# the benchmark
# ================================================================================================

def daemon_conf(workdir, w, port, dns_cache_size=None, backend="sqlite"):
    """The bench configuration; dns.cache_size None keeps the shipped default."""
    cache = "" if dns_cache_size is None else f" cache_size = {dns_cache_size};"
    return f"""# mtastsd.conf written by tests/bench/bench.py
daemon: {{ log_level = "warn"; state_dir = "{workdir}"; runtime_dir = "{workdir}"; allow_root = true; }};
listen = ( {{ protocol = "socketmap"; address = "127.0.0.1:{port}"; }} );
maps = ( {{ name = "{MAP}"; }} );
limits: {{ max_connections = 4096; max_connections_per_ip = 4096; }};
dns: {{ servers = ["{w.dns_server}"]; max_ttl = {TTL}; negative_ttl = {TTL};{cache} }};
fetch: {{ ca_file = "{w.ca_file}"; max_parallel = 64; }};
cache: {{ backend = "{backend}"; max_entries = 1000000; recheck_interval = {TTL}; }};
sqlite: {{ path = "{workdir}/cache.db"; }};
"""


def write_keys(path, names):
    Path(path).write_text("".join(n + "\n" for n in names))
    return str(path)


def interleave(a, b):
    out = []
    for x, y in zip(a, b):
        out += [x, y]
    return out


class Bench:
    def __init__(self, args):
        self.args = args
        self.p = dict(QUICK if args.quick else FULL)
        if args.duration:
            self.p["duration"] = args.duration
        if args.mem_domains:
            self.p["mem"] = args.mem_domains
        self.p["mem0"] = min(self.p["mem0"], self.p["mem"])
        self.only = set(args.only.split(",")) if args.only else set(SCENARIOS)
        unknown = self.only - set(SCENARIOS)
        if unknown:
            raise SystemExit(f"bench.py: unknown scenario(s) {', '.join(sorted(unknown))}")
        self.results = {"params": self.p, "targets": TARGETS, "scenarios": {}}
        self.rows = []
        self.checks = []
        self.cpu_daemon, self.cpu_load = args.cpus
        Sample.cpus = args.cpus
        self.gdb = None if args.no_gdb else shutil.which("gdb")

    # ---- setup --------------------------------------------------------------------------------
    def keysets(self):
        p = self.p
        n = p["cached_keys"] // 2
        k = p["cold"] // 2
        s = p["split"]
        i = p["iso_keys"] // 2
        m = p["mem"] + p["mem_warm"]
        self.pos = {"cp": n, "kp": k + s, "ip": i}
        if "memory" in self.only:
            self.pos["mp"] = m
        kd = self.kdir
        warm = p["mem_warm"]
        self.keys = {
            "cached": write_keys(kd / "cached.txt", interleave([domain("cp", j) for j in range(n)],
                                                              [domain("cn", j) for j in range(n)])),
            "cached_pos": write_keys(kd / "cached-pos.txt", [domain("cp", j) for j in range(n)]),
            "cached_neg": write_keys(kd / "cached-neg.txt", [domain("cn", j) for j in range(n)]),
            "cold": write_keys(kd / "cold.txt", interleave([domain("kp", j) for j in range(k)],
                                                          [domain("kn", j) for j in range(k)])),
            "cold_pos": write_keys(kd / "cold-pos.txt", [domain("kp", k + j) for j in range(s)]),
            "cold_neg": write_keys(kd / "cold-neg.txt", [domain("kn", k + j) for j in range(s)]),
            "iso": write_keys(kd / "iso.txt", interleave([domain("ip", j) for j in range(i)],
                                                        [domain("in", j) for j in range(i)])),
            "mem_warm": write_keys(kd / "mem-warm.txt", [domain("mp", j) for j in range(warm)]),
            "mem": write_keys(kd / "mem.txt", [domain("mp", warm + j) for j in range(p["mem"])]),
            "mem0": write_keys(kd / "mem0.txt", [domain("mp", warm + j) for j in range(p["mem0"])]),
        }

    def setup(self):
        a = self.args
        self.workdir = Path(a.workdir or tempfile.mkdtemp(prefix="mtastsd-bench.")).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kdir = self.workdir / "keys"
        self.kdir.mkdir(exist_ok=True)
        log(f"workdir {self.workdir}")
        tools = self.tools = build_tools(a, self.workdir / "bin")
        self.load = Load(tools["load"])
        self.fixed = tools["fixed_socketmap"]
        src = a.daemon or os.environ.get("MTASTSD") or \
            (str(Path.cwd() / "mtastsd") if (Path.cwd() / "mtastsd").is_file() else W.default_daemon_binary())
        # A private copy: a rebuild during the run must not change the daemon between scenarios.
        (self.workdir / "bin").mkdir(exist_ok=True)
        self.daemon_bin = str(self.workdir / "bin" / "mtastsd-under-test")
        shutil.copy2(src, self.daemon_bin)
        digest = hashlib.sha256(Path(self.daemon_bin).read_bytes()).hexdigest()[:16]
        p = subprocess.run([self.daemon_bin, "-V"], capture_output=True, text=True, timeout=10)
        self.results["daemon"] = {"binary": src, "sha256": digest,
                                  "mtime": time.strftime("%Y-%m-%d %H:%M:%S",
                                                         time.localtime(os.path.getmtime(src))),
                                  "version": (p.stdout + p.stderr).strip()}
        self.results["tools"] = tools

        self.w = W.World(self.workdir / "world")
        self.sites = Sites(self.w, self.workdir)
        self.keysets()
        t = time.monotonic()
        self.w.ca.ensure()
        made = 0
        self.w.add_zone(ZONE, neg_ttl=TTL)
        for prefix, count in self.pos.items():
            names = [domain(prefix, j) for j in range(count)]
            self.sites.publish_dns(names)
            made += self.sites.make_certs(names, SAN_PER_CERT[prefix])
        log(f"{self.sites.count} policy domains in {len(self.sites.groups)} certificate groups "
            f"({made} certificates made) in {time.monotonic() - t:.1f}s")
        if a.prepare_only:
            return
        t = time.monotonic()
        self.w.start(timeout=300)
        self.sites.start()
        log(f"world and bench nginx up in {time.monotonic() - t:.1f}s")
        self.results["setup"] = {"policy_domains": self.sites.count,
                                 "cert_groups": len(self.sites.groups)}

    def start_daemon(self, name, dns_cache_size=None):
        # Every scenario starts from an empty cache: no policies left by the last daemon.
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.workdir}/cache.db{suffix}").unlink(missing_ok=True)
        conf = daemon_conf(self.workdir, self.w, DAEMON_PORT, dns_cache_size, self.args.backend)
        cmd = ["taskset", "-c", str(self.cpu_daemon), self.daemon_bin, "-f", "-c", "{config}"]
        d = self.w.daemon(conf, cmd=cmd, listen=("127.0.0.1", DAEMON_PORT), name=name)
        time.sleep(0.2)
        return d

    def start_ceiling(self):
        cmd = ["taskset", "-c", str(self.cpu_daemon), self.fixed, "-a", f"127.0.0.1:{CEILING_PORT}",
               "-r", "alternate", "-t", "7200"]
        self.ceiling = W.spawn(cmd, self.workdir / "fixed_socketmap.log")
        W.wait_until(lambda: self.ceiling.poll() is not None or W.tcp_accepts("127.0.0.1", CEILING_PORT),
                     10, what="fixed_socketmap to listen")

    def heap(self, d):
        """glibc's heap figures of the daemon (malloc_stats(3) via gdb, printed into its log):
        (system bytes, in-use bytes), or None without gdb. Stops the daemon for a moment."""
        if self.gdb is None:
            return None
        for _ in range(3):
            # Calling malloc_stats() while the daemon is stopped inside malloc (malloc_trim after
            # a burst, say) would deadlock on the arena lock: attach only while it sits in
            # epoll_wait.
            if not wait_in_epoll(d.pid, 15.0):
                log("daemon never idle in epoll_wait; no malloc_stats")
                return None
            before = os.path.getsize(d.log_path)
            p = subprocess.run([self.gdb, "-batch", "-ex", "call (void)malloc_stats()",
                                self.daemon_bin, str(d.pid)],
                               capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
            time.sleep(0.2)
            with open(d.log_path, "rb") as f:
                f.seek(before)
                text = f.read().decode(errors="replace")
            tail = text.rsplit("Total (incl. mmap):", 1)
            if len(tail) == 2:
                nums = [int(line.split("=")[1]) for line in tail[1].splitlines()
                        if line.strip().startswith(("system bytes", "in use bytes"))]
                if len(nums) >= 2:
                    return tuple(nums[:2])
            log(f"malloc_stats via gdb gave nothing (rc={p.returncode}): {p.stderr.strip()[-300:]}")
        return None

    # ---- scenarios ----------------------------------------------------------------------------
    def measure(self, pid, port, keys, conns, **kw):
        s = Sample(pid)
        r = self.load.run(port, keys, conns, **kw)
        return s.stop().annotate(r)

    def alternate(self, k, runs):
        """Timed runs of several kinds in alternating slices (the order flips each round), so
        that a neighbour's burst on this shared machine hits every kind alike; the slices of a
        kind are merged exactly. runs: {kind: (pid, port, keyfile, expected OK ratio)}."""
        p = self.p
        rounds = max(1, round(p["duration"] / p["slice"]))
        slice_s = p["duration"] / rounds
        out = {kind: [] for kind in runs}
        for i in range(rounds):
            order = list(runs) if i % 2 == 0 else list(reversed(list(runs)))
            for kind in order:
                pid, port, keys, expect_ok = runs[kind]
                out[kind].append(self.measure(pid, port, keys, k, duration=slice_s, warmup=p["warmup"],
                                              expect_ok=expect_ok, tolerance=0.01, hist=True,
                                              label=f"{kind} K={k}"))
        return {kind: merge_runs(r) for kind, r in out.items()}

    def scenario_cached(self, d):
        out = {}
        for k in (1, 8, 64):
            m = self.alternate(k, {"daemon": (d.pid, DAEMON_PORT, self.keys["cached"], 0.5),
                                   "ceiling": (self.ceiling.pid, CEILING_PORT, self.keys["cached"], 0.5)})
            dm, cl = m["daemon"], m["ceiling"]
            ratio = dm["rps"] / cl["rps"] if cl["rps"] else 0.0
            out[f"K{k}"] = {"daemon": dm, "ceiling": cl, "ratio": ratio}
            self.rows.append(("cached 50/50", k, dm, cl, ratio))
            log(f"cached K={k}: daemon {dm['rps']:.0f}/s ceiling {cl['rps']:.0f}/s ratio {ratio:.3f}")
            self.checks.append((f"cached K={k} >= {TARGETS['cached_ratio']} x ceiling",
                                ratio >= TARGETS["cached_ratio"], f"{ratio:.3f}"))
            if k == 8:
                p99 = dm["lat_us"]["all"]["p99"] / 1000
                cp99 = cl["lat_us"]["all"]["p99"] / 1000
                self.checks.append((f"cached p99 at K=8 <= {TARGETS['p99_k8_ms']} ms",
                                    p99 <= TARGETS["p99_k8_ms"],
                                    f"{p99:.3f} ms (ceiling {cp99:.3f} ms)"))
        m = self.alternate(8, {"positive": (d.pid, DAEMON_PORT, self.keys["cached_pos"], 1.0),
                               "negative": (d.pid, DAEMON_PORT, self.keys["cached_neg"], 0.0)})
        for kind in ("positive", "negative"):
            out[f"{kind}_K8"] = m[kind]
            self.rows.append((f"cached {kind} only", 8, m[kind], None, None))
            log(f"cached {kind}-only K=8: {m[kind]['rps']:.0f}/s cpu "
                f"{m[kind]['server_cpu_us_per_req']:.2f} us/req")
        pos, neg = m["positive"], m["negative"]
        rel = neg["server_cpu_us_per_req"] / pos["server_cpu_us_per_req"]
        self.checks.append(("negative answers as cheap as positive (daemon CPU/req neg/pos <= 1.05)",
                            rel <= 1.05,
                            f"neg/pos CPU per request {rel:.3f}; req/s {neg['rps'] / pos['rps']:.3f}; "
                            f"p99 {neg['lat_us']['all']['p99']:.0f} vs {pos['lat_us']['all']['p99']:.0f} us"))
        self.results["scenarios"]["cached"] = out

    def scenario_cold(self, d):
        out = {}
        for name, keys, exp in (("mixed", "cold", 0.5), ("positive", "cold_pos", 1.0),
                                ("negative", "cold_neg", 0.0)):
            n = sum(1 for _ in open(self.keys[keys]))
            r = self.measure(d.pid, DAEMON_PORT, self.keys[keys], 32, cold=True, duration=600,
                             expect_ok=exp, tolerance=0.0, label=f"cold {name}", timeout=700)
            r["domains"] = n
            r["cpu_ms_per_domain"] = r["server_cpu_s"] * 1000 / n
            out[name] = r
            self.rows.append((f"cold {name} ({n})", 32, r, None, None))
            log(f"cold {name}: {n} domains in {r['elapsed_s']:.2f}s, {r['rps']:.0f}/s, "
                f"daemon {r['cpu_ms_per_domain']:.3f} ms CPU/domain")
        floor = self.tls_floor(self.keys["cold_pos"])
        out["floor"] = floor
        log(f"cold floor: a bare OpenSSL client (one SSL_CTX, no DNS, no event loop) spends "
            f"{floor['cpu_ms_per_fetch']:.3f} ms CPU per policy fetch ({floor['fetches']} hosts)")
        m = out["mixed"]
        self.checks.append((f"cold <= {TARGETS['cold_cpu_ms']} ms daemon CPU per new domain",
                            m["cpu_ms_per_domain"] <= TARGETS["cold_cpu_ms"],
                            f"{m['cpu_ms_per_domain']:.3f} ms (50/50 mix; with policy "
                            f"{out['positive']['cpu_ms_per_domain']:.3f}, without "
                            f"{out['negative']['cpu_ms_per_domain']:.3f}; floor of a bare "
                            f"OpenSSL fetch {floor['cpu_ms_per_fetch']:.3f}, so the mix cannot "
                            f"go below {floor['cpu_ms_per_fetch'] / 2:.3f})"))
        self.results["scenarios"]["cold"] = out

    def tls_floor(self, keys):
        """CPU per fetch of the bare OpenSSL client (tls_floor.c) on the daemon's core."""
        cmd = ["taskset", "-c", str(self.cpu_daemon), self.tools["tls_floor"], "-a", POLICY_ADDRESS,
               "-C", self.w.ca_file, "-k", keys]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
        if p.returncode != 0 or not lines:
            raise RuntimeError(f"tls_floor failed (rc={p.returncode}): {p.stderr.strip()[-500:]}")
        return json.loads(lines[-1])

    def scenario_isolation(self, d):
        dur, warm = self.p["duration"], self.p["warmup"]
        s = Sample(d.pid)
        cold = self.load.start(DAEMON_PORT, self.keys["iso"], 32, cold=True, duration=dur + warm + 2,
                               label="isolation cold")
        time.sleep(0.5)
        cached = self.load.run(DAEMON_PORT, self.keys["cached"], 8, duration=dur, warmup=warm,
                               expect_ok=0.5, tolerance=0.01, label="isolation cached K=8")
        c = Load.finish(cold, dur + warm + 60)
        s.stop().annotate(cached)
        cached["server_cpu_us_per_req"] = None  # the CPU went mostly to the cold stream
        niso = sum(1 for _ in open(self.keys["iso"]))
        ran_out = c["requests"] >= niso and c["elapsed_s"] < dur + warm + 0.5
        out = {"cached": cached, "cold": c, "cold_ran_out": ran_out}
        self.rows.append(("isolation: cached", 8, cached, None, None))
        self.rows.append(("isolation: cold stream", 32, c, None, None))
        p99 = cached["lat_us"]["all"]["p99"] / 1000
        mx = cached["lat_us"]["all"]["max"] / 1000
        log(f"isolation: cached {cached['rps']:.0f}/s p99 {p99:.3f} ms max {mx:.3f} ms; cold "
            f"{c['requests']} domains at {c['rps']:.0f}/s{' (RAN OUT of domains)' if ran_out else ''}")
        self.checks.append((f"isolation: cached p99 <= {TARGETS['iso_p99_ms']} ms",
                            p99 <= TARGETS["iso_p99_ms"], f"{p99:.3f} ms"))
        self.checks.append((f"isolation: cached max <= {TARGETS['iso_max_ms']} ms",
                            mx <= TARGETS["iso_max_ms"], f"{mx:.3f} ms"))
        self.results["scenarios"]["isolation"] = out

    def memory_run(self, name, dns_cache_size, keys, count):
        d = self.start_daemon(name, dns_cache_size)
        try:
            r0 = proc_rss(d.pid)
            w = self.load.run(DAEMON_PORT, self.keys["mem_warm"], 16, cold=True, duration=600,
                              expect_ok=1.0, tolerance=0.0, timeout=700)
            time.sleep(SETTLE_S)
            base = proc_rss(d.pid)
            heap0 = self.heap(d)
            # Two halves: the second half's growth is free of the fixed cost of the fetch
            # machinery's working set (TLS contexts, buffers) that the first half pays for.
            names = Path(self.keys[keys]).read_text().split()
            half = len(names) // 2
            parts = [write_keys(self.kdir / f"{keys}-{i}.txt", chunk)
                     for i, chunk in enumerate((names[:half], names[half:]))]
            s = Sample(d.pid)
            fills = []
            for i, part in enumerate(parts):
                fills.append(self.load.run(DAEMON_PORT, part, 64, cold=True, duration=3600,
                                           expect_ok=1.0, tolerance=0.0, timeout=3700,
                                           label=f"{name} fill {i}"))
                if i == 0:
                    time.sleep(SETTLE_S)
                    mid = proc_rss(d.pid)
            s.stop()
            fill = {"requests": sum(f["requests"] for f in fills),
                    "elapsed_s": sum(f["elapsed_s"] for f in fills),
                    "replies": {k: sum(f["replies"][k] for f in fills) for k in fills[0]["replies"]},
                    "parts": fills}
            fill["rps"] = fill["requests"] / fill["elapsed_s"] if fill["elapsed_s"] else 0.0
            time.sleep(SETTLE_S)
            full = proc_rss(d.pid)
            heap1 = self.heap(d)
            again = self.load.run(DAEMON_PORT, self.keys[keys], 64, requests=count, expect_ok=1.0,
                                  tolerance=0.0, timeout=600, label=f"{name} re-read")
            after = proc_rss(d.pid)
            res = {"dns_cache_size": dns_cache_size, "policies": count, "rss_start": r0,
                   "rss_base": base, "rss_half": mid, "rss_full": full, "rss_after_reread": after,
                   "bytes_per_policy": (full - base) / count,
                   "bytes_per_policy_second_half": (full - mid) / (count - half),
                   "warm": w, "fill": fill,
                   "fill_cpu_ms_per_domain": s.cpu * 1000 / count, "reread": again,
                   "heap_before": heap0, "heap_after": heap1}
            if heap0 and heap1:
                res["heap_system_per_policy"] = (heap1[0] - heap0[0]) / count
                res["heap_in_use_per_policy"] = (heap1[1] - heap0[1]) / count
            log(f"memory ({name}, dns.cache_size={'default' if dns_cache_size is None else dns_cache_size}): RSS {base / 2**20:.1f} -> "
                f"{full / 2**20:.1f} MiB with {count} policies: {res['bytes_per_policy']:.0f} B/policy "
                f"({res['bytes_per_policy_second_half']:.0f} in the second half)"
                + (f" (heap in use {res['heap_in_use_per_policy']:.0f} B/policy)" if heap1 else "")
                + f"; fill {fill['rps']:.0f}/s, re-read ok_ratio {again['ok_ratio']}")
            return res
        finally:
            d.stop()

    def scenario_memory(self):
        out = {"config": self.memory_run("mtastsd-mem", None, "mem", self.p["mem"])}
        if self.p["mem0"] > 0:
            out["dns_cache_0"] = self.memory_run("mtastsd-mem-nodns", 0, "mem0", self.p["mem0"])
        for key, what in (("config", "bench config, shipped dns.cache_size"),
                          ("dns_cache_0", "dns.cache_size=0")):
            if key in out:
                per = out[key]["bytes_per_policy"]
                self.checks.append((f"memory <= {TARGETS['mem_bytes']} B RSS per cached policy ({what})",
                                    per <= TARGETS["mem_bytes"], f"{per:.0f} B"))
        self.results["scenarios"]["memory"] = out

    # ---- output -------------------------------------------------------------------------------
    def table(self):
        def ms(v):
            return f"{v / 1000:.3f}"

        def pct(v):
            return f"{v * 100:.0f}%" if v is not None else "-"

        dc, lc = str(self.cpu_daemon), str(self.cpu_load)
        lines = []
        hdr = (f"{'scenario':<26} {'K':>3} {'req/s':>8} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} "
               f"{'p99.9ms':>7} {'max ms':>7} {'us/req':>7} {'srv':>5} {'cpu' + dc:>5} {'load':>5} "
               f"{'cpu' + lc:>5} {'RSS MiB':>7}  ok/notfound/bad")
        lines.append(hdr)
        lines.append("-" * len(hdr))

        def row(name, k, r, ratio):
            lat = r["lat_us"]["all"]
            bad = r["requests"] - r["replies"]["ok"] - r["replies"]["notfound"] + sum(r["errors"].values())
            cpu = r.get("server_cpu_us_per_req")
            busy = r.get("cpu_busy") or {}
            rss = r.get("rss")
            return (f"{name:<26} {k:>3} {r['rps']:>8.0f} {(f'{ratio:.3f}' if ratio is not None else ''):>6} "
                    f"{ms(lat['p50']):>7} {ms(lat['p99']):>7} {ms(lat['p999']):>7} {ms(lat['max']):>7} "
                    f"{(f'{cpu:.2f}' if cpu is not None else '-'):>7} {pct(r.get('server_util')):>5} "
                    f"{pct(busy.get(dc)):>5} {pct(r.get('load_util')):>5} {pct(busy.get(lc)):>5} "
                    f"{(f'{rss / 2**20:.1f}' if rss else '-'):>7}  "
                    f"{r['replies']['ok']}/{r['replies']['notfound']}/{bad}")

        for name, k, r, ceil, ratio in self.rows:
            lines.append(row(name, k, r, ratio))
            if ceil:
                lines.append(row("  ceiling (fixed_socketmap)", k, ceil, None))
        sc = self.results["scenarios"]
        if "cold" in sc:
            lines.append("")
            for name, r in sc["cold"].items():
                if name == "floor":
                    lines.append(f"cold floor    : a bare OpenSSL client (one SSL_CTX, no DNS, no "
                                 f"event loop): {r['cpu_ms_per_fetch']:.3f} ms CPU per policy fetch "
                                 f"({r['fetches']} hosts)")
                    continue
                lines.append(f"cold {name:<9}: {r['domains']} new domains in {r['elapsed_s']:.2f} s = "
                             f"{r['domains'] / r['elapsed_s']:.0f} domains/s, daemon CPU "
                             f"{r['cpu_ms_per_domain']:.3f} ms/domain "
                             f"(ok {r['replies']['ok']}, notfound {r['replies']['notfound']})")
        if "isolation" in sc:
            i = sc["isolation"]
            lines.append("")
            lines.append(f"isolation: cached K=8 {i['cached']['rps']:.0f} req/s, p99 "
                         f"{ms(i['cached']['lat_us']['all']['p99'])} ms, max "
                         f"{ms(i['cached']['lat_us']['all']['max'])} ms while the cold stream (32 conns) "
                         f"did {i['cold']['requests']} new domains at {i['cold']['rps']:.0f}/s"
                         f"{' (ran out of domains before the end)' if i['cold_ran_out'] else ''}")
        if "memory" in sc:
            lines.append("")
            for key, m in sc["memory"].items():
                heap = ""
                if "heap_in_use_per_policy" in m:
                    heap = (f"; malloc heap +{m['heap_system_per_policy']:.0f} B/policy, of which in use "
                            f"+{m['heap_in_use_per_policy']:.0f} B/policy")
                lines.append(f"memory (dns.cache_size={m['dns_cache_size'] if m['dns_cache_size'] is not None else 'default'}): RSS {m['rss_start'] / 2**20:.1f} "
                             f"MiB at start, {m['rss_base'] / 2**20:.1f} MiB after {self.p['mem_warm']} "
                             f"warm-up domains, {m['rss_full'] / 2**20:.1f} MiB with {m['policies']} more "
                             f"policies = {m['bytes_per_policy']:.0f} B RSS/policy "
                             f"({m['bytes_per_policy_second_half']:.0f} B over the second half){heap}")
                lines.append(f"    fill {m['fill']['rps']:.0f} domains/s at "
                             f"{m['fill_cpu_ms_per_domain']:.3f} ms daemon CPU/domain; re-reading all: "
                             f"ok_ratio {m['reread']['ok_ratio']:.3f} at {m['reread']['rps']:.0f} req/s, RSS "
                             f"{m['rss_after_reread'] / 2**20:.1f} MiB")
        lines.append("")
        lines.append("targets:")
        for what, ok, val in self.checks:
            lines.append(f"  {'PASS' if ok else 'FAIL'}  {what}: {val}")
        return "\n".join(lines)

    def wait_quiet(self, limit):
        """Waits (at most limit s) until neither CPU is more than 15% busy over one second."""
        deadline = time.monotonic() + limit
        while True:
            b0 = cpu_busy(self.args.cpus)
            time.sleep(1.0)
            b1 = cpu_busy(self.args.cpus)
            busy = max(b1[c] - b0[c] for c in b0)
            if busy <= 0.15:
                return busy
            if time.monotonic() >= deadline:
                log(f"machine still busy ({busy * 100:.0f}% on one CPU) after {limit:g}s; going on")
                return busy
            log(f"waiting for a quiet machine ({busy * 100:.0f}% busy)")
            time.sleep(4.0)

    def run(self):
        a = self.args
        t0 = time.monotonic()
        self.results["env"] = {"nproc": os.cpu_count(), "uname": " ".join(os.uname()),
                               "loadavg_start": open("/proc/loadavg").read().split()[:3],
                               "cpus": {"daemon": self.cpu_daemon, "load": self.cpu_load}}
        try:
            self.setup()
            if a.prepare_only:
                return 0
            if a.wait_quiet:
                self.wait_quiet(a.wait_quiet)
            if {"cached", "cold", "isolation"} & self.only:
                self.start_ceiling()
                d = self.start_daemon("mtastsd-bench")
                try:
                    warm = self.load.run(DAEMON_PORT, self.keys["cached"], 8, cold=True, duration=120,
                                         expect_ok=0.5, tolerance=0.0, timeout=180)
                    log(f"cached set warmed: {warm['replies']}")
                    if "cached" in self.only:
                        self.scenario_cached(d)
                    if "cold" in self.only:
                        self.scenario_cold(d)
                    if "isolation" in self.only:
                        self.scenario_isolation(d)
                finally:
                    d.stop()
                    W.terminate(self.ceiling)
            if "memory" in self.only:
                self.scenario_memory()
        finally:
            if hasattr(self, "sites"):
                self.sites.stop()
            if hasattr(self, "w"):
                self.w.stop()
        self.results["elapsed_s"] = time.monotonic() - t0
        self.results["env"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        self.results["checks"] = [{"target": w, "pass": ok, "value": v} for w, ok, v in self.checks]
        p = self.p
        print(f"mtastsd benchmark ({'quick' if a.quick else 'full'}): timed runs {p['duration']:g} s "
              f"(+{p['warmup']:g} s warm-up each; daemon and ceiling alternate in "
              f"{max(1, round(p['duration'] / p['slice']))} slices); daemon/ceiling on CPU "
              f"{self.cpu_daemon}, load generator and test servers on CPU {self.cpu_load}")
        dm = self.results["daemon"]
        print(f"daemon: {dm['version']} ({dm['binary']}, built {dm['mtime']}, sha256 {dm['sha256']}); load average "
              f"{' '.join(self.results['env']['loadavg_start'])} at start, "
              f"{' '.join(self.results['env']['loadavg_end'])} at end; took {self.results['elapsed_s']:.0f} s")
        print("columns: us/req = server CPU (utime+stime) per request; srv = server CPU / wall time; "
              f"cpu{self.cpu_daemon}, cpu{self.cpu_load} = everything that ran on that CPU (ours or a "
              "neighbour's); load = load generator CPU / wall time")
        print(self.table())
        if a.json:
            Path(a.json).write_text(json.dumps(self.results, indent=1) + "\n")
        if not a.keep and not a.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return 0 if all(ok for _, ok, _ in self.checks) else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default="sqlite", choices=("sqlite", "memory"),
                    help="cache.backend of the daemon (default sqlite, as shipped)")
    ap.add_argument("--quick", action="store_true", help="2 s runs, smaller domain sets")
    ap.add_argument("--duration", type=float, help="seconds per timed run (default 10, quick 2)")
    ap.add_argument("--only", help="comma list of " + ",".join(SCENARIOS))
    ap.add_argument("--mem-domains", type=int, help="policies for the memory scenario (100000)")
    ap.add_argument("--no-gdb", action="store_true", help="do not read malloc_stats() through gdb")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                    help="before measuring, wait up to S seconds for both CPUs to be idle")
    ap.add_argument("--workdir", help="keep and reuse this directory (certificates are cached there)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    ap.add_argument("--prepare-only", action="store_true",
                    help="make the certificates and key files in --workdir, then stop")
    ap.add_argument("--daemon", help="mtastsd binary (default $MTASTSD, ./mtastsd, build/mtastsd)")
    ap.add_argument("--load", help="load generator binary (default: built next to this script)")
    ap.add_argument("--fixed", help="fixed_socketmap binary")
    ap.add_argument("--json", help="write every figure here")
    ap.add_argument("--cpus", default="0,1", help="DAEMON_CPU,LOAD_CPU (default 0,1)")
    args = ap.parse_args()
    try:
        args.cpus = tuple(int(x) for x in args.cpus.split(","))
        assert len(args.cpus) == 2 and args.cpus[0] != args.cpus[1]
    except (ValueError, AssertionError):
        ap.error("--cpus wants two different CPU numbers, e.g. 0,1")
    if os.geteuid() != 0:
        print("bench.py: needs root (network namespace, ports 53 and 443)", file=sys.stderr)
        return 77
    avail = os.sched_getaffinity(0)
    if not set(args.cpus) <= avail:
        print(f"bench.py: CPUs {args.cpus} not all available (have {sorted(avail)})", file=sys.stderr)
        return 2
    # Everything started from here on (world servers, load generator) inherits the load CPU;
    # the daemon and the ceiling are started under taskset on the other one.
    os.sched_setaffinity(0, {args.cpus[1]})
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
