"""The folder a reference server serves: one body of writeshape's byte pattern.

``index.html`` holds the body, so ``GET /`` returns it from nginx, h2o and nghttpd alike
(each maps a directory to its index.html); ``bytes/N`` is the same file (a hard link, no
second copy), so ``/bytes/N`` works as on writeshape's own server for that one size.
Clients verify every byte against toolkit.protocol.body.
"""

from __future__ import annotations

import os
from pathlib import Path

from toolkit.protocol.body import BodyStore

INDEX = "index.html"


def write_docroot(root: str | os.PathLike[str], body_bytes: int) -> Path:
    """Write the body file (and its /bytes/N link) under ``root``; the body's path."""
    if body_bytes < 0:
        raise ValueError("body size must be >= 0")
    base = Path(root)
    (base / "bytes").mkdir(parents=True, exist_ok=True)
    body = base / INDEX
    with open(body, "wb") as fh:
        fh.write(BodyStore(body_bytes).view(body_bytes))
    link = base / "bytes" / str(body_bytes)
    link.unlink(missing_ok=True)
    os.link(body, link)
    return body
