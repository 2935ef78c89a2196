"""writeshape: how HTTP/2 DATA frames reach the socket, measured."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "compare"]


def __getattr__(name: str) -> Any:
    # `toolkit.compare(...)` without importing the runner (h2, psutil, ...) on every
    # `import toolkit`: the pytest plugin and the CLI import this package too.
    if name == "compare":
        from toolkit.runner import compare

        return compare
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
