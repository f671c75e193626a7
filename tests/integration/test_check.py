#!/usr/bin/env python3
"""test_check.py: mtasts-check against the real test world (unbound, nginx with the world CA) and
real Postfix smtpd services with STARTTLS on loopback (issue 7). Rule IDs: /work/shared/RFC-NOTES.md."""

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "world"))

import taplib  # noqa: E402

taplib.enter_netns()

from world import World  # noqa: E402

T = taplib.test
SCHEMA = json.loads((taplib.TOP_SRCDIR / "doc" / "mtasts-check.schema.json").read_text())
CHECK = os.environ.get("MTASTS_CHECK") or str(taplib.TOP_SRCDIR / "build" / "mtasts-check")
TLSRPT = "v=TLSRPTv1; rua=mailto:tlsrpt@enf.test,https://report.enf.test/v1"


def pol(mode="enforce", mx=("mx1.{d}",), max_age=604800, d=""):
    return ("version: STSv1\nmode: %s\n" % mode + "".join(f"mx: {m.format(d=d)}\n" for m in mx)
            + f"max_age: {max_age}\n")


def validate(v, s, path="$"):
    """A validator for the JSON Schema subset the schema uses: type (incl. lists), enum,
    required, properties, additionalProperties=false, items, $ref to #/$defs."""
    if v is None and "null" in (s.get("type") or []):
        return
    if "$ref" in s:
        s = SCHEMA["$defs"][s["$ref"].split("/")[-1]]
    types = s.get("type")
    if types is not None:
        types = types if isinstance(types, list) else [types]
        pytypes = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
                   "integer": int}
        ok = any(isinstance(v, pytypes[t]) and not (t == "integer" and isinstance(v, bool))
                 for t in types)
        assert ok, f"{path}: {v!r} is not {types}"
    if "enum" in s:
        assert v in s["enum"], f"{path}: {v!r} not in {s['enum']}"
    if isinstance(v, dict):
        for k in s.get("required", []):
            assert k in v, f"{path}: missing {k}"
        props = s.get("properties", {})
        if s.get("additionalProperties") is False:
            extra = set(v) - set(props)
            assert not extra, f"{path}: unexpected {extra}"
        for k, sub in props.items():
            if k in v:
                validate(v[k], sub, f"{path}.{k}")
    if isinstance(v, list) and "items" in s:
        for i, x in enumerate(v):
            validate(x, s["items"], f"{path}[{i}]")


def run(ctx, *args, probe=False):
    cmd = [CHECK, "--dns", "127.0.0.1", "--ca-file", ctx["w"].ca_file, "--timeout", "3"]
    if probe:
        cmd.append("--probe-mx")
    r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, NO_COLOR="1"))
    return r


def check_json(ctx, domain, probe=False):
    r = run(ctx, "--json", domain, probe=probe)
    doc = json.loads(r.stdout)
    validate(doc, SCHEMA)
    d = doc["domains"][0]
    assert r.returncode == d["exit_status"], (r.returncode, d["exit_status"], r.stderr)
    return d


def setup():
    w = World()
    w.start()
    with w.batch():
        w.add_domain("enf.test", mx=[(10, "mx1.enf.test"), (20, "backup.other.test")],
                     policy=pol(d="enf.test"), tlsrpt=[TLSRPT])
        w.add_domain("all.test", mx=[(10, "mail.other.test")], policy=pol(d="all.test"))
        w.add_domain("tst.test", policy=pol("testing", d="tst.test"),
                     tlsrpt=["v=TLSRPTv1; rua=mailto:a@tst.test", "v=TLSRPTv1; rua=mailto:b@tst.test"])
        w.add_domain("off.test", policy="version: STSv1\nmode: none\nmax_age: 604800\n",
                     tlsrpt=["v=TLSRPTv1; rua=mailto:a@b!10m"])
        w.add_domain("nocfg.test", txt=None)
        w.add_domain("near.test", txt=["id=1; v=STSv1"])
        w.add_domain("gone.test", policy=None)
        w.add_domain("badtxt.test", txt=["v=STSv1; id=;"])
        w.add_domain("warn.test", policy=pol(mx=("mx1.{d}.", "192.0.2.1", "*.test"),
                                             max_age=99999999, d="warn.test"))
        w.add_domain("short.test", policy=pol(max_age=3600, d="short.test"))
        w.add_domain("zero.test", policy=pol(max_age=0, d="zero.test"))
        w.add_domain("nullmx.test", mx=[(0, ".")])
        w.add_domain("implicit.test", mx=[])
        w.add_domain("dnsfail.test", servfail=True)
        w.add_domain("probe.test", policy=pol(mx=("*.probe.test",), d="probe.test"),
                     mx=[(10, "good.probe.test"), (20, "wrong.probe.test"),
                         (30, "expired.probe.test"), (40, "noint.probe.test"),
                         (50, "plain.probe.test")])
    for i, (host, kind, tls) in enumerate([("good", "good", True), ("wrong", "wrong-name", True),
                                           ("expired", "expired", True),
                                           ("noint", "no-intermediate", True),
                                           ("plain", "good", False)]):
        w.add_mx_server(f"{host}.probe.test", f"127.0.0.{11 + i}", cert=kind, starttls=tls)
    # The README's example: enf.test's covered MX is a real Postfix with a good certificate.
    w.add_mx_server("mx1.enf.test", "127.0.0.16")
    return {"w": w}


def teardown(ctx):
    if ctx:
        ctx["w"].stop()


@T("section 12 enforcing: TXT raw + id, policy over HTTPS with cert details, an MX NOT COVERED "
   "is loud, TLS-RPT valid, and the exact Postfix answer (APPLY-5)")
def _(ctx):
    d = check_json(ctx, "enf.test")
    assert d["verdict"] == "enforcing" and d["exit_status"] == 0, d
    assert d["txt"]["records"] == [{"text": "v=STSv1; id=1;", "candidate": True}]
    assert d["txt"]["id"] == "1"
    p = d["policy"]
    assert p["http_status"] == 200 and p["content_type"] == "text/plain", p
    assert p["tls_version"] in ("TLSv1.2", "TLSv1.3") and p["size"] == len(p["text"])
    c = p["certificate"]
    assert c["san"] == ["mta-sts.enf.test"] and c["chain_valid"] and c["cipher"], c
    assert "intermediate" in c["issuer"] and c["not_after"].endswith("GMT"), c
    assert p["mode"] == "enforce" and p["mx"] == ["mx1.enf.test"] and p["max_age"] == 604800
    hosts = {h["host"]: h["covered_by"] for h in d["mx"]["hosts"]}
    assert hosts == {"mx1.enf.test": "mx1.enf.test", "backup.other.test": None}, hosts
    assert any("backup.other.test is NOT COVERED" in a for a in d["alerts"]), d["alerts"]
    assert d["tlsrpt"]["result"] == "valid", d["tlsrpt"]
    assert d["tlsrpt"]["rua"] == ["mailto:tlsrpt@enf.test", "https://report.enf.test/v1"]
    assert d["postfix"] == {"reply": "OK",
                            "text": "secure match=mx1.enf.test servername=hostname"}, d["postfix"]
    t = run(ctx, "enf.test")
    assert t.returncode == 0, t
    assert "NOT COVERED" in t.stdout and "\033[" not in t.stdout, t.stdout
    assert "OK secure match=mx1.enf.test servername=hostname" in t.stdout
    print("# " + t.stdout.replace("\n", "\n# "))


@T("section 12 broken: enforce with no MX covered (mail will bounce), exit 4")
def _(ctx):
    d = check_json(ctx, "all.test")
    assert d["verdict"] == "broken" and d["exit_status"] == 4, d
    assert any("will bounce" in a for a in d["alerts"]), d["alerts"]


@T("section 12 testing: no protection (loud); TLSRPT-5 multiple records")
def _(ctx):
    d = check_json(ctx, "tst.test")
    assert d["verdict"] == "testing" and d["exit_status"] == 1, d
    assert any("no protection" in a for a in d["alerts"])
    assert d["tlsrpt"]["result"] == "multiple" and len(d["tlsrpt"]["records"]) == 2
    assert d["postfix"]["reply"] == "NOTFOUND"


@T("section 12 disabled (mode none), exit 2; TLSRPT-7.5 raw '!' invalid with the reason")
def _(ctx):
    d = check_json(ctx, "off.test")
    assert d["verdict"] == "disabled" and d["exit_status"] == 2, d
    assert d["tlsrpt"]["result"] == "invalid" and "'!'" in d["tlsrpt"]["problem"], d["tlsrpt"]


@T("section 12 not configured: NXDOMAIN TXT; near miss warned (TXT-6); TLS-RPT none; exit 3")
def _(ctx):
    d = check_json(ctx, "nocfg.test")
    assert d["verdict"] == "not configured" and d["exit_status"] == 3, d
    assert d["tlsrpt"]["result"] == "none"
    assert d["postfix"]["reply"] == "NOTFOUND"
    d = check_json(ctx, "near.test")
    assert d["verdict"] == "not configured", d
    assert any("looks like MTA-STS" in w for w in d["warnings"]), d["warnings"]
    assert any("orphan policy" in w for w in d["warnings"]), d["warnings"]


@T("section 12 broken: TXT present but the policy unreachable (404), or the TXT invalid (TXT-4)")
def _(ctx):
    d = check_json(ctx, "gone.test")
    assert d["verdict"] == "broken" and d["policy"]["http_status"] == 404, d
    assert d["policy"]["failure"] == "sts-policy-fetch-error"
    assert any("unreachable or invalid" in a for a in d["alerts"]), d["alerts"]
    d = check_json(ctx, "badtxt.test")
    assert d["verdict"] == "broken" and d["txt"]["result"] == "invalid" and d["txt"]["problem"]


@T("section 12 warnings: max_age clamped (POL-7), trailing dot and IP dropped (MX-1), "
   "pattern as broad as a public suffix, under a day, zero")
def _(ctx):
    d = check_json(ctx, "warn.test")
    assert d["verdict"] == "enforcing", d
    w = " | ".join(d["warnings"])
    for s in ("clamped", "ends with a dot", "IP address was dropped", "'*.test' is as broad"):
        assert s in w, (s, w)
    assert d["policy"]["max_age"] == 31557600
    assert any("under a day" in x for x in check_json(ctx, "short.test")["warnings"])
    assert any("max_age is 0" in x for x in check_json(ctx, "zero.test")["warnings"])


@T("section 12: null MX reported as such; implicit MX when there is no MX record")
def _(ctx):
    d = check_json(ctx, "nullmx.test")
    assert d["mx"]["null_mx"] and d["mx"]["hosts"] == [], d["mx"]
    d = check_json(ctx, "implicit.test")
    assert d["mx"]["implicit"] and d["mx"]["hosts"][0]["host"] == "implicit.test", d["mx"]


@T("DNS failure: broken with dns-temperror, exit 5; a domain that does not exist is said")
def _(ctx):
    d = check_json(ctx, "dnsfail.test")
    assert d["verdict"] == "broken" and d["dns_temperror"] and d["exit_status"] == 5, d
    d = check_json(ctx, "nosuch.enf.test")
    assert d["verdict"] == "not configured" and d["exists"] is False, d
    t = run(ctx, "nosuch.enf.test")
    assert "does not exist" in t.stdout, t.stdout
    t = run(ctx, "not a domain")
    assert t.returncode == 64 and "not a domain name" in t.stderr, t


@T("several domains at once: one JSON document, exit status the highest")
def _(ctx):
    r = run(ctx, "--json", "enf.test", "gone.test", "tst.test")
    doc = json.loads(r.stdout)
    validate(doc, SCHEMA)
    assert [d["verdict"] for d in doc["domains"]] == ["enforcing", "broken", "testing"]
    assert r.returncode == 4


@T("--probe-mx (RPT-1): good cert accepted; wrong name, expired, missing intermediate (named) "
   "and no STARTTLS rejected, against real SMTP servers on loopback")
def _(ctx):
    d = check_json(ctx, "probe.test", probe=True)
    assert d["mx"]["probed"], d["mx"]
    pr = {h["host"].split(".")[0]: h["probes"][0] for h in d["mx"]["hosts"]}
    assert pr["good"]["status"] == "ok" and pr["good"]["accepted"], pr["good"]
    assert pr["good"]["certificate"]["chain_valid"] and pr["good"]["tls_version"]
    assert pr["wrong"]["certificate"]["name_mismatch"] and not pr["wrong"]["accepted"], pr["wrong"]
    assert pr["expired"]["certificate"]["expired"] and not pr["expired"]["accepted"]
    mi = pr["noint"]["certificate"]["missing_intermediate"]
    assert mi is not None and "intermediate" in mi and not pr["noint"]["accepted"], pr["noint"]
    assert pr["plain"]["status"] == "no-starttls" and not pr["plain"]["accepted"], pr["plain"]
    assert d["verdict"] == "enforcing"
    assert sum("would fail MTA-STS validation" in a for a in d["alerts"]) == 4, d["alerts"]
    t = run(ctx, "probe.test", probe=True)
    assert "4. MX TLS probe" in t.stdout and "missing intermediate" in t.stdout, t.stdout
    # A polite prober: every session ends with QUIT, none in the middle of TLS (Postfix's log).
    log = (ctx["w"].workdir / "mx" / "maillog").read_text()
    assert "lost connection" not in log, log
    ends = [line for line in log.splitlines() if "disconnect from" in line]
    assert len(ends) >= 10 and all("quit=1" in line for line in ends), ends


@T("README example: enf.test with --probe-mx answers all seven questions")
def _(ctx):
    t = run(ctx, "--probe-mx", "enf.test")
    assert t.returncode == 0, (t.returncode, t.stdout, t.stderr)
    for section in ("1. MTA-STS TXT record", "2. Policy", "3. MX coverage", "4. MX TLS probe",
                    "5. TLS-RPT record", "6. Verdict  ENFORCING", "7. mtastsd would answer"):
        assert section in t.stdout, (section, t.stdout)
    assert "NOT COVERED" in t.stdout and "!! DANGER" in t.stdout, t.stdout
    d = check_json(ctx, "enf.test", probe=True)
    mx1 = next(h for h in d["mx"]["hosts"] if h["host"] == "mx1.enf.test")
    assert mx1["probes"][0]["status"] == "ok" and mx1["probes"][0]["accepted"], mx1
    if os.environ.get("README_EXAMPLE"):
        Path(os.environ["README_EXAMPLE"]).write_text(t.stdout)


taplib.run(setup, teardown)
