"""From a flush's segments to syscalls: the strategy's plan, TLS if any, the socket writer.

    segments -> strategy.plan                      -> SocketWriter (h2c)
    segments -> strategy.plan_tls -> SSL_writes    -> SocketWriter (TLS over memory BIOs)
    segments -> strategy.plan_tls -> SSLSocket.send                (--tls-mode stdlib)

A plan is a generator: the next step is pulled only once the socket took the previous
call, so a strategy's scratch buffer is never needed twice at once and ciphertext never
piles up behind a slow reader. A blocked call stays pending until the socket is writable.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

from toolkit.server.socket_writer import SendCounters, SocketWriter, write_clock
from toolkit.server.tls_plan import tls_socket_calls
from toolkit.strategies import Buffer, SocketCall, SslWrite, Strategy, TlsStep


def _stdlib_calls(steps: Iterator[TlsStep]) -> Iterator[SocketCall]:
    # SSLSocket.send is one SSL_write; OpenSSL's socket BIO decides records and syscalls.
    for step in steps:
        if isinstance(step, SslWrite):
            yield SocketCall("send", (step.plaintext,))


class WritePath:
    """One connection's write pipeline. ``tls`` is a tls_probe MemoryBioTLS (membio) or
    None; ``stdlib`` says the socket itself is an ``ssl.SSLSocket``."""

    def __init__(self, sock: socket.socket, strategy: Strategy, counters: SendCounters, *,
                 tls: Any = None, stdlib: bool = False) -> None:
        self.sock = sock
        self.strategy = strategy
        self.counters = counters
        self.tls = tls
        self.stdlib = stdlib
        self.writer = SocketWriter(sock, counters)
        self.plan: Iterator[SocketCall] | None = None
        self.last_flush_s = time.monotonic()

    @property
    def busy(self) -> bool:
        """A flush is in progress (planned calls left, or one pending on the socket)."""
        return self.plan is not None or self.writer.busy

    def start(self, segments: list[Buffer]) -> None:
        """Plan the flush of ``segments`` (the previous one must be complete)."""
        strategy = self.strategy
        idle = strategy.idle_reset_after_s
        if idle is not None and time.monotonic() - self.last_flush_s > idle:
            strategy.on_idle()
        if self.tls is not None:
            self.plan = tls_socket_calls(self.tls, strategy.plan_tls(segments))
        elif self.stdlib:
            self.plan = _stdlib_calls(strategy.plan_tls(segments))
        else:
            self.plan = strategy.plan(segments)

    def drive(self) -> bool:
        """Continue the current flush; True when it is complete, False if the socket blocks."""
        try:
            if self.writer.busy and not self.writer.write_pending():
                return False
            plan = self.plan
            # Under membio TLS the plan's steps between two socket calls are SSL_writes and
            # taking their records: timed as one stretch, two clock reads per socket call.
            counters = self.counters
            time_tls = counters.timed and self.tls is not None
            while plan is not None:
                if time_tls:
                    t0 = write_clock()
                    call = next(plan, None)
                    counters.tls_ns += write_clock() - t0 - counters.bias_ns
                else:
                    call = next(plan, None)
                if call is None:
                    self.plan = None
                    self.last_flush_s = time.monotonic()  # writes idle from here
                    break
                if self.stdlib:
                    self.counters.calls["ssl_write"] += 1
                if not self.writer.submit(call):
                    return False
        except ssl.SSLWantWriteError:
            return False
        return True

    def send_now(self, data: bytes) -> None:
        """Handshake ciphertext: not part of any strategy's shape, but counted. Blocks
        (bounded by the socket) until written, after any flush in progress."""
        while self.busy:
            if not self.drive():
                self.wait_writable()
        if not self.writer.submit(SocketCall("send", (data,))):
            while not self.drive():
                self.wait_writable()

    def send_best_effort(self, plaintext: bytes) -> None:
        """A last word (GOAWAY) without blocking: dropped if a flush is in progress or the
        socket does not take it."""
        if not plaintext or self.busy:
            return
        if self.tls is not None:
            self.tls.write_plaintext(plaintext)
            plaintext = self.tls.take_ciphertext()
        self.writer.submit(SocketCall("send", (plaintext,)))

    def wait_writable(self, timeout_s: float = 1.0) -> None:
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLOUT | select.POLLERR | select.POLLHUP)
        poller.poll(timeout_s * 1000)
