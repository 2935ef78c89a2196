"""Reads tcp_info of closing connections off the event loop, then closes them.

A sock_diag round trip through pyroute2 costs about 2 ms and runs pyroute2's own event
loop on a thread; doing it on the server's loop stalls every connection meanwhile (and
forever, should netlink never answer). So a closing connection's socket is handed to one
background thread, which reads its counters and only then closes it: sock_diag needs
the socket alive.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass

log = logging.getLogger("writeshape.server")


@dataclass
class TcpTotals:
    data_segs_out: int = 0
    bytes_sent: int = 0
    connections: int = 0
    failed: int = 0


class ClosingSocketReader:
    def __init__(self) -> None:
        self.totals = TcpTotals()
        self._lock = threading.Lock()
        self._queue: queue.Queue[socket.socket | None] = queue.Queue()
        self._pending = 0
        self._disabled = False
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tcp-info", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            t = self.totals
            return {"data_segs_out": t.data_segs_out, "bytes_sent": t.bytes_sent,
                    "connections": t.connections, "failed": t.failed,
                    "pending": self._pending}

    def read_and_close(self, sock: socket.socket) -> None:
        if self._disabled:
            with contextlib.suppress(OSError):
                sock.close()
            return
        with self._lock:
            self._pending += 1
        self._queue.put(sock)

    def _run(self) -> None:
        # Import pyroute2 now, in the background: importing it at the first close would
        # land its memory (several MiB) in the middle of a measurement.
        with contextlib.suppress(Exception):
            import toolkit.probes.tcpinfo  # noqa: F401
        self._ready.set()
        while (sock := self._queue.get()) is not None:
            try:
                self._read(sock)
            finally:
                with contextlib.suppress(OSError):
                    sock.close()
                with self._lock:
                    self._pending -= 1

    def _read(self, sock: socket.socket) -> None:
        try:
            sock.getpeername()
        except OSError:  # reset by the peer: the kernel has no counters left to give
            with self._lock:
                self.totals.failed += 1
            return
        try:
            from toolkit.probes.tcpinfo import read_own_socket

            info = read_own_socket(sock)
        except Exception as exc:  # a probe must never take the server down
            with self._lock:
                self.totals.failed += 1
            if not self._disabled:
                log.warning("tcp_info unavailable, TCP segments not counted: %s", exc)
            self._disabled = True
            return
        with self._lock:
            self.totals.data_segs_out += info.data_segs_out
            self.totals.bytes_sent += info.bytes_sent
            self.totals.connections += 1

    def wait_idle(self, timeout_s: float = 2.0) -> bool:
        """Wait (bounded) until no read is queued or running: allocation probes call this
        so that pyroute2's own allocations do not land in a response's peak."""
        deadline = time.monotonic() + timeout_s
        self._ready.wait(timeout_s)  # the pyroute2 import allocates too
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.pending == 0

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish the queued reads (bounded), then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout_s)
