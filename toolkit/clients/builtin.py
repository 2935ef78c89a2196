"""The built-in HTTP/2 load generator: C connections x M streams over h2c or h2 (TLS, ALPN).

The driver: tickets for requests (a count or a duration, after a warm-up), connection
slots that reconnect when a server drops them, a watchdog that accounts for every
request, and the summary. One connection's protocol work, and why its hot path is lean
on a 2-core machine shared with the server it measures, is in h2_client.py.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from toolkit.clients.h2_client import (
    ConnectionFailed,
    H2LoadConnection,
    RunState,
    make_client_context,
    make_tls,
)
from toolkit.clients.summary import LoadSummary, rate
from toolkit.clients.target import Target, parse_target
from toolkit.errors import UsageError


@dataclass
class LoadConfig:
    url: str
    requests: int | None = 1000
    duration_s: float | None = None
    connections: int = 1
    streams: int = 1
    warmup_requests: int = 0
    insecure: bool = False
    ca_pem_path: str | None = None
    verify_body: bool = True
    timeout_s: float = 60.0
    path_override: str | None = None
    # Advertised SETTINGS_MAX_FRAME_SIZE; None keeps the protocol default (16384) so the
    # server's frame shape is the one under test.
    max_frame_size: int | None = None
    # Called with the local (host, port) of every open connection: once all are open,
    # before the measured phase, and after it, before they are closed (to read the
    # server's side of them, e.g. toolkit.probes.tcp_segments). Blocking is fine: no
    # request is in flight then.
    on_open: Callable[[list[tuple[str, int]]], object] | None = None
    before_close: Callable[[list[tuple[str, int]]], object] | None = None



# --- driver -----------------------------------------------------------------------------


async def _open(run: RunState, ctx: ssl.SSLContext | None) -> H2LoadConnection:
    loop = asyncio.get_running_loop()
    tls = make_tls(ctx, run.target.host) if ctx is not None else None
    try:
        _, proto = await asyncio.wait_for(
            loop.create_connection(lambda: H2LoadConnection(run, tls), run.target.host,
                                   run.target.port),
            timeout=run.cfg.timeout_s,
        )
    except (TimeoutError, OSError) as exc:
        raise ConnectionFailed("connect", f"cannot connect to {run.target.host}:"
                                           f"{run.target.port}: {exc}") from None
    try:
        await asyncio.wait_for(asyncio.shield(proto.ready), timeout=run.cfg.timeout_s)
    except TimeoutError:
        proto.close()
        raise ConnectionFailed("tls" if tls else "connect",
                                "no HTTP/2 SETTINGS from the server in time") from None
    return proto


async def _connection_worker(run: RunState, ctx: ssl.SSLContext | None,
                             client: H2LoadConnection | None) -> None:
    """Drives one connection slot through a phase; reconnects if the server drops it."""
    consecutive_failures = 0
    while not (client is None and run.tickets_done()):
        if client is None:
            try:
                client = await _open(run, ctx)
            except ConnectionFailed as exc:
                run.fail(exc.cause)
                consecutive_failures += 1
                if consecutive_failures >= 3:
                    return
                await asyncio.sleep(0.05)
                continue
            consecutive_failures = 0
            run.clients.append(client)
        client.fill()
        client._flush()
        await client.wait_idle_or_dead()
        if client.dead_cause is None:
            return
        client = None


async def run_load_async(cfg: LoadConfig) -> LoadSummary:
    """Runs the load described by ``cfg`` and returns the measured figures."""
    validate(cfg)
    target = parse_target(cfg.url, cfg.path_override)
    ctx = make_client_context(cfg) if target.tls else None
    run = RunState(cfg=cfg, target=target, warmup_left=cfg.warmup_requests,
               measured_left=cfg.requests if cfg.duration_s is None else None)
    clients = run.clients

    # Connect everything first: connection set-up is not part of the measured window.
    opened = await asyncio.gather(*(_open(run, ctx) for _ in range(cfg.connections)),
                                  return_exceptions=True)
    firsts: list[H2LoadConnection | None] = []
    for item in opened:
        if isinstance(item, ConnectionFailed):
            run.fail(item.cause)
            firsts.append(None)
        elif isinstance(item, BaseException):
            raise item
        else:
            clients.append(item)
            firsts.append(item)
    if not clients:
        return _result(run, cfg, None, target)

    if cfg.on_open is not None:
        cfg.on_open(_local_addrs(clients))
    watchdog = asyncio.create_task(_watchdog(run))
    try:
        if cfg.warmup_requests:
            await _phase(run, ctx, firsts)
            alive = [c for c in clients if c.dead_cause is None]
            firsts = [*alive, *[None] * (cfg.connections - len(alive))]
        run.measuring = True
        t0 = time.perf_counter()
        if cfg.duration_s is not None:
            run.deadline = t0 + cfg.duration_s
        await _phase(run, ctx, firsts)
        t1 = time.perf_counter() if run.deadline is None else run.deadline
        if cfg.before_close is not None:
            cfg.before_close(_local_addrs(clients))
    finally:
        watchdog.cancel()
        for c in clients:
            c.close()
    return _result(run, cfg, t1 - t0, target)


def _local_addrs(clients: list[H2LoadConnection]) -> list[tuple[str, int]]:
    """Local (host, port) of the connections still open (reconnects included)."""
    addrs = []
    for c in clients:
        if c.transport is not None and not c.transport.is_closing():
            name = c.transport.get_extra_info("sockname")
            if name:
                addrs.append((str(name[0]), int(name[1])))
    return addrs


async def _phase(run: RunState, ctx: ssl.SSLContext | None,
                 firsts: list[H2LoadConnection | None]) -> None:
    await asyncio.gather(*(_connection_worker(run, ctx, first) for first in firsts))


async def _watchdog(run: RunState) -> None:
    period = min(1.0, max(0.05, run.cfg.timeout_s / 4))
    while True:
        await asyncio.sleep(period)
        now = time.perf_counter()
        if run.deadline is not None and now >= run.deadline:
            run.stop_issuing = True
            run.changed.set()
        if not run.stop_issuing and now - run.last_progress_s > 2 * run.cfg.timeout_s:
            # Wedged: nothing completed for two timeouts (in-flight requests expire after
            # one). Stop issuing and count what was never done as timeouts, so a run
            # always ends with every request accounted for.
            run.stop_issuing = True
            for _ in range(max(run.measured_left or 0, 0)):
                run.fail("timeout")
            run.measured_left = 0
            run.changed.set()
        for c in list(run.clients):
            if c.dead_cause is None:
                c.expire(now, run.cfg.timeout_s)


def validate(cfg: LoadConfig) -> None:
    """Every setting checked before any connection is made (one-line UsageErrors)."""
    parse_target(cfg.url, cfg.path_override)
    if (cfg.requests is None) == (cfg.duration_s is None):
        raise UsageError("give either a request count or a duration, not both or neither")
    if cfg.requests is not None and cfg.requests < 1:
        raise UsageError("the request count must be at least 1")
    if cfg.duration_s is not None and not 0 < cfg.duration_s <= 86400 * 7:
        raise UsageError("the duration must be more than 0 and at most a week (604800 s)")
    if cfg.connections < 1 or cfg.streams < 1:
        raise UsageError("connections and streams must be at least 1")
    if cfg.warmup_requests < 0 or not 0 < cfg.timeout_s <= 86400:
        raise UsageError("warm-up requests must be >= 0 and the timeout 0..86400 s")
    if cfg.max_frame_size is not None and not 16384 <= cfg.max_frame_size <= 2**24 - 1:
        raise UsageError("max frame size must be between 16384 and 16777215")


def _result(run: RunState, cfg: LoadConfig, duration_s: float | None, target: Target
            ) -> LoadSummary:
    lat = run.latency.summary()
    ttfb = run.ttfb.summary()
    records = record_bytes = handshake = app_bytes = None
    sizes: dict[int, int] | None = None
    if target.tls:
        counters: list[Any] = [getattr(c.tls, "received", None) for c in run.clients]
        if counters and all(x is not None for x in counters):
            records = sum(int(x.records) for x in counters)
            record_bytes = sum(int(x.record_bytes) for x in counters)
            handshake = sum(int(x.handshake_records) for x in counters)
            app_bytes = sum(int(x.application_record_bytes) for x in counters)
            sizes = {}
            for x in counters:
                for size, n in x.sizes.items():
                    sizes[size] = sizes.get(size, 0) + n
            sizes = dict(sorted(sizes.items()))
    mbytes = rate(run.body_bytes, duration_s)
    return LoadSummary(
        driver="builtin",
        requests=run.ok,
        failures=sum(run.failures.values()),
        failures_by_cause={k: v for k, v in run.failures.items() if v},
        duration_s=duration_s,
        req_per_s=rate(run.ok, duration_s),
        mbytes_per_s=None if mbytes is None else mbytes / 1e6,
        body_bytes_received=run.body_bytes,
        latency_ms_p50=lat.p50_ms,
        latency_ms_p90=lat.p90_ms,
        latency_ms_p99=lat.p99_ms,
        latency_ms_max=lat.max_ms,
        latency_ms_mean=lat.mean_ms,
        ttfb_ms_p50=ttfb.p50_ms,
        ttfb_ms_p99=ttfb.p99_ms,
        connections=cfg.connections,
        streams=cfg.streams,
        tls_records_received=records,
        tls_record_bytes_received=record_bytes,
        tls_record_sizes_received=sizes,
        tls_handshake_records_received=handshake,
        tls_application_record_bytes_received=app_bytes,
        transport=target.transport,
        url=cfg.url,
        warmup_requests=cfg.warmup_requests,
    )


def run_load(cfg: LoadConfig) -> LoadSummary:
    """Synchronous wrapper: runs :func:`run_load_async` in a fresh event loop.

    Called from inside a running loop (a Jupyter kernel, say), the fresh loop runs on a
    worker thread, since asyncio.run refuses to nest.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_load_async(cfg))
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="writeshape-load") as ex:
        return ex.submit(asyncio.run, run_load_async(cfg)).result()


