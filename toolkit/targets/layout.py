"""Where a reference server's files are and how it listens: the input of every config
generator, plain data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReferenceLayout:
    host: str
    port: int
    tls: bool
    root: str  # the document root (toolkit.targets.docroot)
    tmp: str  # writeshape's folder for this server: config, pid file, temp paths
    cert_path: str | None = None  # PEM chain, leaf first (TLS only)
    key_path: str | None = None
