"""smtp_server.py: a small real SMTP server with STARTTLS for mtasts-check's MX probes.

Threaded, stdlib only: banner, EHLO (STARTTLS offered or not), STARTTLS with a world
certificate chain, then EHLO/QUIT over TLS. Enough for a sender's STARTTLS handshake."""

import socket
import ssl
import threading


class SmtpServer:
    def __init__(self, address, port, chain, key, *, starttls=True, name="mx.test"):
        self.address, self.port, self.starttls, self.name = address, port, starttls, name
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(chain, key)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stop_event = threading.Event()
        self.sessions = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop_event.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.sessions += 1
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        conn.settimeout(10)
        f = None
        try:
            conn.sendall(f"220 {self.name} ESMTP test\r\n".encode())
            tls = False
            f = conn.makefile("rb")
            while True:
                line = f.readline(1024)
                if not line:
                    return
                cmd = line.strip().upper()
                if cmd.startswith(b"EHLO"):
                    ext = [b"PIPELINING", b"8BITMIME"]
                    if self.starttls and not tls:
                        ext.append(b"STARTTLS")
                    out = [f"250-{self.name}".encode()] + [b"250-" + e for e in ext[:-1]]
                    conn.sendall(b"\r\n".join(out + [b"250 " + ext[-1]]) + b"\r\n")
                elif cmd == b"STARTTLS" and self.starttls and not tls:
                    conn.sendall(b"220 2.0.0 Ready to start TLS\r\n")
                    f.close()
                    try:
                        conn = self.ctx.wrap_socket(conn, server_side=True)
                    except (ssl.SSLError, OSError):
                        return
                    f = conn.makefile("rb")
                    tls = True
                elif cmd == b"QUIT":
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                if f is not None:
                    f.close()
                conn.close()
            except OSError:
                pass

    def stop(self, timeout=5.0):
        self.stop_event.set()
        self.sock.close()
        self.thread.join(timeout)
