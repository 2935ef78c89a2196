"""The server's endpoints: `/` and `/bytes/N` (pattern bodies), `/mem`, `/mem/series` and
`/stats` (JSON).

Pure routing: a request target in, (status, body view, content type) out. What `/mem`
and `/stats` report comes from callables the shell hands in, so the protocol core that
calls the router never does I/O itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from toolkit.protocol.body import BodyStore

OCTETS = b"application/octet-stream"
TEXT = b"text/plain"
JSON = b"application/json"


class Answer(NamedTuple):
    status: int
    body: memoryview
    content_type: bytes


def _text(status: int, text: str) -> Answer:
    return Answer(status, memoryview(text.encode()), TEXT)


class Router:
    """Answers GET and HEAD; ``mem(query)`` and ``stats(query)`` return JSON-able dicts."""

    def __init__(self, bodies: BodyStore, default_body_bytes: int, max_bytes_endpoint: int,
                 mem: Callable[[dict[str, list[str]]], dict[str, Any]],
                 stats: Callable[[dict[str, list[str]]], dict[str, Any]],
                 series: Callable[[], dict[str, Any] | None] = lambda: None) -> None:
        self.bodies = bodies
        self.default_body = bodies.view(default_body_bytes)
        self.max_bytes_endpoint = max_bytes_endpoint
        self._mem = mem
        self._stats = stats
        self._series = series

    def __call__(self, method: bytes, target: str) -> Answer:
        if method not in (b"GET", b"HEAD"):
            return _text(405, "method not allowed\n")
        # The target is split by hand: urlsplit reads "//host" as an authority and refuses
        # some (a `:path` of "//[x" raised ValueError); a path is never anything but a path.
        path, _, query = target.partition("?")
        if path == "/":
            return Answer(200, self.default_body, OCTETS)
        if path.startswith("/bytes/"):
            text = path[len("/bytes/"):]
            # isascii: str.isdigit() also accepts digits that int() refuses ('²').
            if not (text.isascii() and text.isdigit()) or int(text) > self.max_bytes_endpoint:
                # The body store grows to the largest body asked for: this caps its RSS.
                return _text(400, f"/bytes/N takes 0 <= N <= {self.max_bytes_endpoint}\n")
            return Answer(200, self.bodies.view(int(text)), OCTETS)
        if path == "/mem":
            return Answer(200, memoryview(json.dumps(self._mem(parse_qs(query))).encode()), JSON)
        if path == "/mem/series":
            series = self._series()
            if series is None:
                return _text(404, "memory sampling is off (serve --memory-sample-ms N)\n")
            return Answer(200, memoryview(json.dumps(series).encode()), JSON)
        if path == "/stats":
            return Answer(200, memoryview(json.dumps(self._stats(parse_qs(query))).encode()),
                          JSON)
        return _text(404, "not found\n")
