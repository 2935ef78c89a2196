"""The load drivers behind one call: h2load (nghttp2, in C) or the built-in asyncio client.

Both return a :class:`~toolkit.clients.summary.LoadSummary`, so the runner and the pytest
plugin never care which one ran.
"""

from __future__ import annotations

import shutil

from toolkit.clients.summary import LoadSummary
from toolkit.errors import UsageError

DRIVERS = ("auto", "builtin", "h2load")


def resolve_driver(driver: str) -> str:
    """auto: h2load when installed (a C client is never the bottleneck on 2 cores, so the
    server's cost decides the ranking), else the built-in client."""
    if driver not in DRIVERS:
        raise UsageError(f"--driver must be auto, builtin or h2load, not {driver!r}")
    if driver == "auto":
        return "h2load" if shutil.which("h2load") else "builtin"
    if driver == "h2load":
        from toolkit.clients.h2load import find_h2load

        find_h2load()  # MissingToolError now, not at the first cell
    return driver


def run_driver(driver: str, url: str, *, requests: int, connections: int, streams: int,
               timeout_s: float = 60.0, verify_body: bool = True) -> LoadSummary:
    """``requests`` requests over ``connections`` x ``streams`` to ``url``. The built-in
    client checks every body against writeshape's pattern unless ``verify_body`` is off
    (another server's content); h2load checks statuses and lengths only."""
    if driver == "h2load":
        from toolkit.clients.h2load import run_h2load

        result = run_h2load(url, requests=requests, connections=connections, streams=streams,
                            timeout_s=max(timeout_s, 10.0) * 10)
        return result.summary(connections=connections, streams=streams, url=url)
    from toolkit.clients.builtin import LoadConfig, run_load

    return run_load(LoadConfig(url=url, requests=requests, connections=connections,
                               streams=streams, warmup_requests=0, insecure=True,
                               timeout_s=timeout_s, verify_body=verify_body))
