"""Python allocation per response, measured in the server with tracemalloc.

For each sample: reset the server's tracemalloc peak (through /mem), fetch one response,
read the peak again. ``peak - current at reset`` is the most memory that serving that
one response held at once beyond what was already live: a body-sized copy shows up
whole, a zero-copy write shows only its bookkeeping. Requests are sequential on one
connection so that responses do not overlap.
"""

from __future__ import annotations

import statistics

from toolkit.clients.fetch import H2Fetcher


def measure_alloc_per_response(url: str, path: str, *, samples: int = 5,
                               warmup: int = 2) -> int:
    """Median peak allocation (bytes) while serving one response of ``path``."""
    with H2Fetcher(url) as f:
        f.get("/mem?tracemalloc=start")
        try:
            for _ in range(warmup):  # first responses fill caches (hpack, body store)
                f.get(path)
            peaks = []
            for _ in range(samples):
                before = f.get("/mem?reset_peak=1").json()
                f.get(path)
                after = f.get("/mem").json()
                peaks.append(after["tracemalloc_peak_bytes"] - before["tracemalloc_current_bytes"])
        finally:
            f.get("/mem?tracemalloc=stop")
    return int(statistics.median(peaks))
