#!/usr/bin/python3
"""A TLS front for a plain HTTP tracker, for tests on loopback only.

usage: tls_proxy.py CERT.pem KEY.pem http://127.0.0.1:PORT PORTFILE

Listens on 127.0.0.1 (a free port, written to PORTFILE once it accepts), terminates TLS with
CERT/KEY and forwards each GET, path and query unchanged, to the upstream HTTP server; the
upstream's status and body go back to the client.
"""
import http.client
import http.server
import os
import socketserver
import ssl
import sys
import urllib.parse

cert, key, upstream, portfile = sys.argv[1:5]
up = urllib.parse.urlsplit(upstream)
if up.hostname not in ("127.0.0.1", "::1", "localhost"):
    sys.exit("tls_proxy: upstream must be on loopback")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        try:
            c = http.client.HTTPConnection(up.hostname, up.port, timeout=10)
            c.request("GET", self.path)
            r = c.getresponse()
            status, body = r.status, r.read()
            c.close()
        except OSError as e:
            status, body = 502, ("upstream: %s" % e).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("tls_proxy: " + (fmt % args) + "\n")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def get_request(self):
        # The handshake runs in the handler's thread, so a client that stalls or rejects our
        # certificate cannot block the accept loop.
        sock, addr = self.socket.accept()
        return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def process_request_thread(self, request, client_address):
        try:
            request.settimeout(10)
            request.do_handshake()
        except (OSError, ssl.SSLError) as e:
            sys.stderr.write("tls_proxy: handshake failed: %s\n" % e)
            self.shutdown_request(request)
            return
        super().process_request_thread(request, client_address)


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv = Server(("127.0.0.1", 0), Handler)
tmp = portfile + ".tmp"
with open(tmp, "w") as f:
    f.write("%d\n" % srv.server_address[1])
os.rename(tmp, portfile)
srv.serve_forever()
