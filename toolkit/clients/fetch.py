"""A minimal blocking HTTP/2 GET, for control requests (/stats, /mem) and checks.

Not a load generator (that is toolkit.clients.builtin): one connection, sequential requests.
"""

from __future__ import annotations

import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.settings

from toolkit.errors import UsageError, WriteshapeError


@dataclass
class FetchResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class H2Fetcher:
    """One HTTP/2 connection (h2c prior knowledge, or TLS with ALPN h2)."""

    def __init__(self, url: str, *, timeout_s: float = 30.0, ca_pem_path: str | None = None,
                 insecure: bool = True) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"not an http:// or https:// URL: {url!r}")
        self.authority = parts.netloc
        self.scheme = parts.scheme
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            raw = socket.create_connection((parts.hostname, port), timeout=timeout_s)
        except OSError as exc:
            raise WriteshapeError(f"cannot connect to {parts.netloc}: {exc}") from exc
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket = raw
        if parts.scheme == "https":
            # Checked against ca_pem_path, or the system's CAs, unless insecure.
            ctx = ssl.create_default_context(cafile=ca_pem_path)
            if insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            try:
                self.sock = ctx.wrap_socket(raw, server_hostname=parts.hostname)
            except (ssl.SSLError, OSError) as exc:
                raw.close()
                raise WriteshapeError(f"TLS with {parts.netloc} failed: {exc}") from exc
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="latin-1"))
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 30)})
        self.conn.increment_flow_control_window(1 << 30)
        self._flush()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def get(self, path: str) -> FetchResponse:
        try:
            return self._get(path)
        except OSError as exc:  # timeouts and resets: the caller gets one clear line
            raise WriteshapeError(f"GET {path} from {self.authority} failed: {exc}") from exc

    def _get(self, path: str) -> FetchResponse:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "GET"), (":path", path),
                                     (":scheme", self.scheme), (":authority", self.authority)],
                               end_stream=True)
        self._flush()
        status, headers, chunks = 0, {}, []
        while True:
            data = self.sock.recv(1 << 20)
            if not data:
                raise WriteshapeError(f"server closed the connection during GET {path}")
            for ev in self.conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    headers = {str(k): str(v) for k, v in ev.headers}
                    status = int(headers.get(":status", "0"))
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    chunks.append(ev.data)
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    self._flush()
                    return FetchResponse(status, headers, b"".join(chunks))
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    raise WriteshapeError(f"stream reset during GET {path}")
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    raise WriteshapeError(f"GOAWAY during GET {path}")
            self._flush()

    def close(self) -> None:
        try:
            self.conn.close_connection()
            self._flush()
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> H2Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def fetch(url: str, path: str | None = None, **kw: Any) -> FetchResponse:
    """GET one URL (or ``path`` on the URL's server) on a fresh connection."""
    target = path if path is not None else (urlsplit(url).path or "/")
    with H2Fetcher(url, **kw) as f:
        return f.get(target)
