"""Does a URL answer HTTP/2? One GET with h2c prior knowledge, or TLS with ALPN h2.

The probe waits for the response headers only (not the body): a server that sends
HEADERS for a GET speaks HTTP/2. Certificates are not checked (profiled servers use
throwaway ones); the ALPN answer is.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from toolkit.clients.target import parse_target


class NotHttp2(str):
    """A reason that will not change by waiting: something answered, not in HTTP/2."""


def probe_http2(url: str, *, timeout_s: float = 2.0) -> str | None:
    """None if ``url`` answered a GET over HTTP/2 with a status; else why not (one line,
    a NotHttp2 when the server answered in another protocol)."""
    target = parse_target(url)
    try:
        raw = socket.create_connection((target.host, target.port), timeout=timeout_s)
    except OSError as exc:
        return f"cannot connect to {target.authority}: {exc.strerror or exc}"
    try:
        sock: socket.socket = raw
        if target.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(raw, server_hostname=target.host)
            chosen = sock.selected_alpn_protocol()
            if chosen != "h2":
                return NotHttp2(f"{target.authority} answered TLS but ALPN chose {chosen!r}, "
                                "not 'h2'")
        return _get_headers(sock, target.authority, target.path, "https" if target.tls
                            else "http")
    except ssl.SSLError as exc:
        return f"TLS with {target.authority} failed: {exc.reason or exc}"
    except OSError as exc:
        return f"{target.authority}: {exc.strerror or exc}"
    finally:
        raw.close()


def _get_headers(sock: socket.socket, authority: str, path: str, scheme: str) -> str | None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", path), (":scheme", scheme),
                          (":authority", authority)], end_stream=True)
    sock.sendall(conn.data_to_send())
    received = b""
    while True:
        data = sock.recv(65536)
        if not data:
            if received:
                return _not_http2(authority, received)
            return f"{authority} closed the connection without an HTTP/2 response"
        received = (received + data)[:64]
        if received.startswith(b"HTTP/"):
            return _not_http2(authority, received)
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            return NotHttp2(f"{authority} does not speak HTTP/2: {exc}")
        for ev in events:
            if isinstance(ev, h2.events.ResponseReceived):
                return None
            if isinstance(ev, h2.events.ConnectionTerminated | h2.events.StreamReset):
                return f"{authority} refused the request ({type(ev).__name__})"
        sock.sendall(conn.data_to_send())


def _not_http2(authority: str, first: bytes) -> str:
    kind = "HTTP/1.x" if first.startswith(b"HTTP/") else "something else"
    line = first.split(b"\r\n", 1)[0][:40].decode("latin-1")
    return NotHttp2(f"{authority} answered {kind}, not HTTP/2 ({line!r})")


def wait_http2(url: str, *, timeout_s: float, alive: Callable[[], bool] = lambda: True,
               interval_s: float = 0.05) -> str | None:
    """Probe until ``url`` answers HTTP/2 (None), answers in another protocol, ``alive()``
    turns False, or the deadline passes; then the last reason it did not answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        reason = probe_http2(url, timeout_s=max(0.2, min(2.0, left)))
        if reason is None:
            return None
        if isinstance(reason, NotHttp2) or not alive() or time.monotonic() + interval_s > deadline:
            return reason
        time.sleep(interval_s)
