"""Executes socket calls on a non-blocking socket: exact syscalls, no copies.

A partial write continues from its offset (a memoryview slice of the same buffer), EAGAIN
leaves the remainder pending until the socket is writable. Every call made is counted by
kind, including the ones that ended in EAGAIN, so ``/stats`` can be checked against strace.
While ``SendCounters.timed`` is on, the CPU time spent inside each call (EAGAIN
included) is added up: see :data:`write_clock`.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from dataclasses import dataclass, field

from toolkit.strategies import Buffer, SocketCall

# Python's socket.send is the sendto(2) syscall on Linux (glibc send() -> sendto).
SYSCALL_NAMES = {"send": "sendto", "sendmsg": "sendmsg"}

# The write timing's clock: the thread's CPU time, not the wall clock. Measured against
# perf's sys_enter/sys_exit (tests/server/test_write_timing.py): perf_counter_ns around a
# sendmsg read 2.1-7.3x the time the kernel spent in it, since the send wakes the client,
# which often takes the server's CPU right at the syscall's exit (~1 involuntary context
# switch per read); the thread's CPU time read 0.84-1.32x. It costs ~0.55 us a read
# (clock_gettime(CLOCK_THREAD_CPUTIME_ID) is a real syscall), hence the switch.
write_clock = time.thread_time_ns


def clock_bias_ns(samples: int = 201) -> int:
    """What an empty bracket reads (the part of the two clock calls inside it): the
    median of ``samples`` back-to-back pairs, subtracted from every timed call."""
    pairs = sorted(-write_clock() + write_clock() for _ in range(samples))
    return pairs[samples // 2]


def remainder_after(call: SocketCall, sent: int) -> SocketCall | None:
    """The part of ``call`` not yet written after ``sent`` bytes went out (no copy)."""
    if sent <= 0:
        return call if call.nbytes else None
    bufs = call.buffers
    i = 0
    while i < len(bufs) and sent >= len(bufs[i]):
        sent -= len(bufs[i])
        i += 1
    if i == len(bufs):
        return None
    rest: list[Buffer] = list(bufs[i:])
    if sent:
        rest[0] = memoryview(rest[0])[sent:]
    # A continued sendmsg with one buffer left is still a sendmsg: the shape is the strategy's.
    return SocketCall(call.method, tuple(rest), call.flags)


@dataclass
class SendCounters:
    """The server's own count of its socket calls, per syscall name as strace shows it."""

    calls: Counter[str] = field(default_factory=Counter)
    eagain: Counter[str] = field(default_factory=Counter)
    bytes_sent: int = 0
    # Write timing (server-wide switch, see write_clock): CPU time inside the socket
    # calls, and under membio TLS inside the plan's steps between them (SSL_writes,
    # record work); each timed stretch less the clock's own bias.
    timed: bool = False
    bias_ns: int = 0
    send_ns: int = 0
    tls_ns: int = 0

    def time_writes(self, on: bool) -> None:
        if on and not self.timed:
            self.bias_ns = clock_bias_ns()
        self.timed = on

    def to_dict(self) -> dict[str, int]:
        return {"send": self.calls["send"], "sendmsg": self.calls["sendmsg"]}

    def by_syscall(self) -> dict[str, int]:
        return {SYSCALL_NAMES[k]: v for k, v in self.calls.items()
                if v and k in SYSCALL_NAMES}


class SocketWriter:
    """Writes one call at a time; ``write_pending`` returns True when nothing is left."""

    __slots__ = ("_pending", "_sock", "counters")

    def __init__(self, sock: socket.socket, counters: SendCounters) -> None:
        self._sock = sock
        self.counters = counters
        self._pending: SocketCall | None = None

    @property
    def busy(self) -> bool:
        return self._pending is not None

    def submit(self, call: SocketCall) -> bool:
        """Try to write ``call`` now; True if it was written whole."""
        assert self._pending is None, "a call is still pending"
        self._pending = call
        return self.write_pending()

    def write_pending(self) -> bool:
        counters = self.counters
        clock = write_clock if counters.timed else None
        while self._pending is not None:
            call = self._pending
            counters.calls[call.method] += 1
            t0 = clock() if clock else 0
            try:
                if call.method == "send":
                    n = self._sock.send(call.buffers[0], call.flags)
                else:
                    n = self._sock.sendmsg(call.buffers, (), call.flags)
            except (BlockingIOError, InterruptedError):
                if clock:
                    counters.send_ns += clock() - t0 - counters.bias_ns
                counters.eagain[call.method] += 1
                return False
            if clock:
                counters.send_ns += clock() - t0 - counters.bias_ns
            counters.bytes_sent += n
            # Whole writes are the common case: skip the walk over the iovecs.
            whole = n == len(call.buffers[0]) if len(call.buffers) == 1 else n == call.nbytes
            self._pending = None if whole else remainder_after(call, n)
        return True
