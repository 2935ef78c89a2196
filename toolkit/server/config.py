"""What a `writeshape serve` process is told: the strategy, TLS, the body, the limits."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

from toolkit.errors import UsageError
from toolkit.server.guard import GuardLimits
from toolkit.strategies import check_options, check_strategy

MAX_BYTES_ENDPOINT = 1 << 30  # /bytes/N refuses more than 1 GiB
# Bodies live in one buffer: refuse what the machine cannot hold, before allocating it.
MAX_BODY_BYTES = 1 << 32
EVENT_LOOPS = ("asyncio", "uvloop")


@dataclass
class ServerConfig:
    strategy: str = "single"
    tls: bool = False
    host: str = "127.0.0.1"
    port: int = 8443
    body_bytes: int = 1 << 20
    threads: bool = False
    max_frame_bytes: int = 16384
    tls_mode: str = "membio"
    # membio without tls_probe's counters: the baseline that measures the probe's cost.
    tls_probe: bool = True
    tls_version: str = "1.3"
    flush_bytes: int = 1 << 20
    # How much of one response goes out before the next stream's turn within a flush.
    # RFC 9218's default (urgency 3, not incremental) is one response after another, as
    # nghttpd sends them; a smaller turn interleaves streams (fairer first bytes, more
    # h2 state calls and iovecs per byte).
    stream_turn_bytes: int = 1 << 20
    # The strategy's own options, by keyword (toolkit.strategies: each declares its flag).
    strategy_options: dict[str, Any] = field(default_factory=dict)
    tracemalloc: bool = False
    stats_json: str | None = None
    # Memory over time (GET /mem/series): RSS and live heap every this many ms; 0: off.
    memory_sample_ms: int = 0
    # CPU time inside socket calls (and membio TLS record work), reported in /stats; off
    # by default (about 1.5 us a socket call), switched by GET /stats?write_timing=on|off.
    write_timing: bool = False
    # The event loop that drives the sockets: asyncio's own, or uvloop (libuv) where
    # installed (pip install writeshape[uvloop]); same calls, measured in the README.
    event_loop: str = "asyncio"
    # Protection limits (defaults close to nghttp2's; docs/limits.md, toolkit/server/guard.py).
    max_concurrent_streams: int = 100
    max_header_list_bytes: int = 65536
    idle_timeout_s: float = 120.0
    # A connection must have finished its TLS handshake and HTTP/2 preface by then: a
    # client that dribbles its start a byte at a time never looks idle (slowloris).
    start_timeout_s: float = 10.0
    max_control_frames_queued: int = GuardLimits.max_control_frames_queued
    max_control_frames_per_s: float = GuardLimits.max_control_frames_per_s
    control_frames_burst: int = GuardLimits.control_frames_burst
    max_resets_per_s: float = GuardLimits.max_resets_per_s
    reset_burst: int = GuardLimits.reset_burst
    max_settings_entries: int = GuardLimits.max_settings_entries
    max_continuations: int = GuardLimits.max_continuations
    max_bytes_endpoint: int = MAX_BYTES_ENDPOINT

    @property
    def transport(self) -> str:
        return "h2" if self.tls else "h2c"

    def validate(self) -> list[str]:
        """Raise UsageError for what cannot be served; return notes for options that are
        valid but that this strategy ignores, one line each."""
        check_strategy(self.strategy, self.transport)
        notes = check_options(self.strategy, self.strategy_options, tls=self.tls)
        if not 1 <= self.max_frame_bytes <= (1 << 24) - 1:
            raise UsageError("--max-frame-size must be 1..16777215 (it caps DATA payloads)")
        if self.tls_mode not in ("membio", "stdlib"):
            raise UsageError("--tls-mode must be membio or stdlib")
        if not self.tls_probe and not (self.tls and self.tls_mode == "membio"):
            raise UsageError("--no-tls-probe applies to --tls with --tls-mode membio")
        if self.event_loop not in EVENT_LOOPS:
            raise UsageError(f"--loop must be {' or '.join(EVENT_LOOPS)}, "
                             f"not {self.event_loop!r}")
        if self.event_loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
            raise UsageError("--loop uvloop: uvloop is not installed "
                             "(pip install uvloop, or writeshape[uvloop])")
        if self.tls_version not in ("1.2", "1.3"):
            raise UsageError("--tls-version must be 1.2 or 1.3")
        if not 0 <= self.port <= 65535:
            raise UsageError(f"--port must be 0..65535, not {self.port}")
        if not 0 <= self.body_bytes <= MAX_BODY_BYTES:
            raise UsageError(f"--body-size must be 0..{MAX_BODY_BYTES} bytes (4GiB)")
        if not 0 <= self.memory_sample_ms <= 3_600_000:
            raise UsageError("--memory-sample-ms must be 0 (off) .. 3600000")
        if self.flush_bytes < 1:
            raise UsageError("--flush-bytes must be at least 1")
        if self.stream_turn_bytes < 1:
            raise UsageError("--stream-turn must be at least 1 byte")
        if self.max_concurrent_streams < 1:
            raise UsageError("--max-concurrent-streams must be at least 1")
        if self.max_header_list_bytes < 1:
            raise UsageError("--max-header-list-size must be at least 1")
        if not 0 <= self.max_bytes_endpoint <= MAX_BYTES_ENDPOINT:
            raise UsageError(f"--max-bytes-endpoint must be 0..{MAX_BYTES_ENDPOINT}")
        if not 0 < self.idle_timeout_s <= 86400:  # also refuses nan
            raise UsageError("--idle-timeout must be more than 0 and at most 86400 seconds")
        if not 0 < self.start_timeout_s <= 86400:
            raise UsageError("--start-timeout must be more than 0 and at most 86400 seconds")
        self.guard_limits().validate()
        return notes

    def guard_limits(self) -> GuardLimits:
        return GuardLimits(
            max_control_frames_queued=self.max_control_frames_queued,
            max_control_frames_per_s=self.max_control_frames_per_s,
            control_frames_burst=self.control_frames_burst,
            max_resets_per_s=self.max_resets_per_s, reset_burst=self.reset_burst,
            max_settings_entries=self.max_settings_entries,
            max_continuations=self.max_continuations,
            max_header_block_bytes=self.max_header_list_bytes)
