"""Where a client connects: an http:// (h2c, prior knowledge) or https:// (h2 over TLS) URL."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from toolkit.errors import UsageError


@dataclass(frozen=True)
class Target:
    tls: bool
    host: str
    port: int
    authority: str
    path: str

    @property
    def transport(self) -> str:
        return "h2" if self.tls else "h2c"


def parse_target(url: str, path_override: str | None = None) -> Target:
    """Splits an http:// or https:// URL; anything else is a UsageError."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"bad URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"bad URL {url!r}: use http://HOST:PORT/PATH or https://HOST:PORT/PATH")
    tls = parts.scheme == "https"
    port = port or (443 if tls else 80)
    path = path_override or (parts.path or "/")
    if path_override is None and parts.query:
        path += "?" + parts.query
    return Target(tls=tls, host=parts.hostname, port=port, authority=parts.netloc, path=path)
