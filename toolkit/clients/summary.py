"""What a load run measured, the same for every driver (the built-in client, h2load).

A figure the driver did not measure is None, never 0: a run that completed no request has
no req/s (not 0 req/s) and no latency.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LoadSummary:
    driver: str  # "builtin" or "h2load"
    requests: int  # completed and correct (2xx, full length, right bytes)
    failures: int
    duration_s: float | None
    req_per_s: float | None
    mbytes_per_s: float | None  # body bytes, 1e6 per MB
    latency_ms_p50: float | None = None
    latency_ms_p90: float | None = None
    latency_ms_p99: float | None = None
    latency_ms_max: float | None = None
    latency_ms_mean: float | None = None
    ttfb_ms_p50: float | None = None
    ttfb_ms_p99: float | None = None
    failures_by_cause: dict[str, int] = field(default_factory=dict)
    body_bytes_received: int | None = None
    connections: int = 1
    streams: int = 1
    # TLS records the client received (built-in client only: it reads every record).
    tls_records_received: int | None = None
    tls_record_bytes_received: int | None = None
    # The same records by wire size (5-byte header included) -> count, and how many of
    # them came during the handshakes (per connection, not per response).
    tls_record_sizes_received: dict[int, int] | None = None
    tls_handshake_records_received: int | None = None
    tls_application_record_bytes_received: int | None = None
    transport: str = "h2c"
    url: str = ""
    warmup_requests: int = 0
    command: list[str] = field(default_factory=list)  # h2load's argv

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rate(count: float | None, duration_s: float | None) -> float | None:
    """count / duration, None when either is unknown or the run lasted no time."""
    if count is None or duration_s is None or duration_s <= 0:
        return None
    return count / duration_s
