#!/usr/bin/env python3
"""fixed_socketmap.py: a socketmap server that answers every request with one fixed reply.

The stand-in for mtastsd in the world's self-test, and the benchmark's ceiling reference: it does
nothing but framing, so no real daemon answering over the same protocol can be faster in Python.
Event-driven (selectors/epoll), any number of connections, requests pipelined on a connection are
answered in order. Netstrings as Postfix reads them: leading zeros are accepted; a non-digit before
':', an empty or over-long length, or a terminator other than ',' closes the connection.

    fixed_socketmap.py [-f] [-c FILE] [--listen HOST:PORT | --listen /unix/path]
                       [--answer TEXT | --notfound] [--max-request BYTES]

FILE holds "key = value" lines (listen, answer, max_request; '#' starts a comment), so the script
can be started like the daemon (`-f -c FILE`). Defaults: 127.0.0.1:8461, the answer
"OK secure match=example.com servername=hostname", 4096-byte requests. SIGTERM/SIGINT exit 0.
"""

import argparse
import os
import selectors
import signal
import socket
import sys

DEFAULT_ANSWER = "OK secure match=example.com servername=hostname"
MAX_PENDING_OUT = 1 << 20   # stop reading a connection while this much output is unsent


def netstring(data):
    return str(len(data)).encode() + b":" + data + b","


class Stop(Exception):
    pass


class Conn:
    __slots__ = ("sock", "inbuf", "outbuf", "reading")

    def __init__(self, sock):
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.reading = True


class Server:
    def __init__(self, listen, answer, max_request):
        self.reply = netstring(answer.encode())
        self.max_request = max_request
        self.sel = selectors.DefaultSelector()
        if listen.startswith("/"):
            try:
                os.unlink(listen)
            except FileNotFoundError:
                pass
            self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.lsock.bind(listen)
        else:
            host, _, port = listen.rpartition(":")
            host = host.strip("[]") or "127.0.0.1"
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.lsock = socket.socket(family, socket.SOCK_STREAM)
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.lsock.bind((host, int(port)))
        self.lsock.listen(socket.SOMAXCONN)
        self.lsock.setblocking(False)
        self.sel.register(self.lsock, selectors.EVENT_READ, None)

    def close(self, conn):
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def accept(self):
        for _ in range(64):
            try:
                sock, _ = self.lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:   # EMFILE and friends: try again on the next turn
                return
            sock.setblocking(False)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Conn(sock)
            self.sel.register(sock, selectors.EVENT_READ, conn)

    def parse(self, conn):
        """Answer every complete request in inbuf; False on a framing error."""
        buf, pos, n = conn.inbuf, 0, len(conn.inbuf)
        replies = 0
        while pos < n:
            colon = buf.find(b":", pos, min(n, pos + 12))
            if colon < 0:
                if n - pos > 11:
                    return False
                break
            digits = bytes(buf[pos:colon])
            if not digits or not digits.isdigit():
                return False
            length = int(digits)
            if length > self.max_request:
                return False
            end = colon + 1 + length
            if end >= n:
                break
            if buf[end] != 0x2C:   # ','
                return False
            replies += 1
            pos = end + 1
        if pos:
            del buf[:pos]
        if replies:
            conn.outbuf += self.reply * replies
        return True

    def flush(self, conn):
        while conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.close(conn)
                return False
            del conn.outbuf[:sent]
        want_read = len(conn.outbuf) < MAX_PENDING_OUT
        events = (selectors.EVENT_READ if want_read else 0) | \
            (selectors.EVENT_WRITE if conn.outbuf else 0)
        if events == 0:
            events = selectors.EVENT_READ
        try:
            self.sel.modify(conn.sock, events, conn)
        except (KeyError, ValueError):
            return False
        conn.reading = want_read
        return True

    def readable(self, conn):
        try:
            data = conn.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close(conn)
            return
        if not data:
            if conn.outbuf:
                self.flush(conn)
            self.close(conn)
            return
        conn.inbuf += data
        if not self.parse(conn):
            self.flush(conn)   # answer what came before the bad frame, then hang up
            self.close(conn)
            return
        self.flush(conn)

    def run(self):
        try:
            self._loop()
        except Stop:
            pass
        self.sel.close()
        self.lsock.close()

    def _loop(self):
        while True:
            for key, events in self.sel.select(timeout=None):
                if key.data is None:
                    self.accept()
                    continue
                conn = key.data
                if events & selectors.EVENT_WRITE:
                    if not self.flush(conn):
                        continue
                if events & selectors.EVENT_READ and conn.reading:
                    self.readable(conn)


def read_config(path):
    out = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            key, sep, value = line.partition("=")
            if not sep:
                sys.exit(f"{path}:{lineno}: expected key = value")
            key, value = key.strip(), value.strip().strip('"')
            if key not in ("listen", "answer", "max_request"):
                sys.exit(f"{path}:{lineno}: unknown key {key!r}")
            out[key] = value
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-f", action="store_true", help="foreground (always; accepted for daemon parity)")
    ap.add_argument("-c", dest="config", help="config file with listen/answer/max_request lines")
    ap.add_argument("--listen")
    ap.add_argument("--answer")
    ap.add_argument("--notfound", action="store_true", help="answer 'NOTFOUND '")
    ap.add_argument("--max-request", type=int)
    args = ap.parse_args()
    conf = read_config(args.config) if args.config else {}
    listen = args.listen or conf.get("listen", "127.0.0.1:8461")
    answer = "NOTFOUND " if args.notfound else (args.answer or conf.get("answer", DEFAULT_ANSWER))
    max_request = args.max_request or int(conf.get("max_request", 4096))
    server = Server(listen, answer, max_request)

    def stop(_sig, _frm):   # raise, so that a select() in progress ends now (PEP 475 would retry it)
        raise Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"fixed_socketmap: listening on {listen}, answer {answer!r}", file=sys.stderr, flush=True)
    server.run()
    print("fixed_socketmap: exiting", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
