"""Plumbing shared by the mock servers (mock_upstream.py, mock_openai.py), python3 stdlib only:
the request handler base (HTTP/1.1 keep-alive, no request log, TCP_NODELAY), the threaded
server, the Reply exception a route raises to answer at once, the word rule both mocks score
with, and the command line they take (--host, --port, and their own flags)."""
import argparse, re, socket, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Reply(Exception):
    """raise Reply(status, body, headers): the answer, from anywhere inside a route."""

    def __init__(self, status, body, headers=None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def words(s):
    return re.findall(r"\w+", str(s).lower())


class Handler(BaseHTTPRequestHandler):
    """Each mock subclasses this with its own send() and do_GET/do_POST."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def setup(self):
        super().setup()
        # no Nagle: with delayed ACKs a reply written in two pieces would stall ~40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    quiet_errors = ()  # exception classes a handler may end with on purpose: not printed

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], self.quiet_errors):
            super().handle_error(request, client_address)


def main(doc, server_cls, handler_cls, add_args=None, configure=None):
    """Parses --host/--port (plus add_args(parser)'s), calls configure(args), serves until
    interrupted; prints "listening on HOST:PORT" first (the specs wait for that line)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    if add_args:
        add_args(ap)
    a = ap.parse_args()
    if configure:
        configure(a)
    srv = server_cls((a.host, a.port), handler_cls)
    print("listening on %s:%d" % srv.server_address[:2], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
