"""taplib.py: a small TAP harness for the integration suites: netns entry, skips, test registry.

    import taplib
    taplib.enter_netns()                 # re-exec under tests/world/netns-run (or SKIP)
    @taplib.test("RULE-1 what it proves")
    def _(ctx): assert ...
    taplib.run(setup=..., teardown=...)  # prints 1..N, ok/not ok lines, exits 0/1
"""

import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP_SRCDIR = HERE.parent.parent

_tests = []


def skip_all(reason):
    print(f"1..0 # SKIP {reason}")
    sys.stdout.flush()
    sys.exit(0)


def enter_netns():
    """Run this script inside a private network namespace; SKIP (TAP) where that is impossible.
    automake's TAP driver counts exit 77 as an error, so the skip is said in TAP instead."""
    if os.environ.get("NETNS_RUN_INSIDE") == "1":
        return
    if os.geteuid() != 0:
        skip_all("needs root for a private network namespace (the CI runs as root)")
    netns_run = HERE / "netns-run"
    rc = subprocess.call([str(netns_run), sys.executable, os.path.abspath(sys.argv[0])]
                         + sys.argv[1:])
    if rc == 77:
        skip_all("netns-run could not create a network namespace here")
    sys.exit(rc)


def test(name):
    def deco(fn):
        _tests.append((name, fn))
        return fn
    return deco


def run(setup=None, teardown=None):
    """Runs every registered test in order with ctx = setup(); a failing setup fails them all."""
    print(f"1..{len(_tests)}")
    sys.stdout.flush()
    failed = 0
    ctx = None
    try:
        ctx = setup() if setup else None
    except Exception:
        for i, (name, _) in enumerate(_tests, 1):
            print(f"not ok {i} - {name} # setup failed")
        print("# " + traceback.format_exc().replace("\n", "\n# "))
        sys.exit(1)
    try:
        for i, (name, fn) in enumerate(_tests, 1):
            t0 = time.monotonic()
            try:
                fn(ctx)
                print(f"ok {i} - {name} ({time.monotonic() - t0:.2f}s)")
            except Exception:
                failed += 1
                print(f"not ok {i} - {name}")
                print("# " + traceback.format_exc().rstrip().replace("\n", "\n# "))
            sys.stdout.flush()
    finally:
        if teardown:
            teardown(ctx)
    sys.exit(1 if failed else 0)
