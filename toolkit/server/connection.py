"""One client connection's I/O: the socket, TLS, the event loop's callbacks, stream threads.

Thin by design: what the bytes mean is the protocol core's (toolkit/server/core.py), how
a flush becomes syscalls is the write path's (toolkit/server/write_path.py). Here:

    readable -> recv -> [TLS decrypt] -> core.receive -> verdict? GOAWAY + close
    writable -> core.next_flush -> write_path (strategy, [TLS], exact syscalls)

With ``threads`` every stream gets its own thread that builds and writes its DATA flushes
under the connection lock, as the review's server spawns a task per stream: the
body-sized buffer of ``single`` is then allocated by many threads (glibc arenas).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import threading
import time
from typing import TYPE_CHECKING, Any

import h2.exceptions
from h2.errors import ErrorCodes

from toolkit.server.core import Close, H2ServerCore, Outcome, Response
from toolkit.server.write_path import WritePath
from toolkit.strategies import make_strategy

if TYPE_CHECKING:
    from toolkit.server.shell import Server

log = logging.getLogger("writeshape.server")

RECV_BYTES = 256 * 1024
TLS_READ_BYTES = 16 * 1024  # one record's plaintext at most
PUMP_FLUSHES = 64  # flushes per writable event, then the loop gets to read again

_TCP_INFO_BYTES = 232
_TCPI_BYTES_ACKED = struct.Struct("=Q")  # struct tcp_info.tcpi_bytes_acked, offset 120
_TCPI_BYTES_ACKED_OFFSET = 120


def bytes_acked(sock: socket.socket) -> int | None:
    """Bytes the peer has acknowledged on ``sock`` (TCP_INFO), None if unavailable."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
    except OSError:
        return None
    if len(raw) < _TCPI_BYTES_ACKED_OFFSET + 8:
        return None
    return int(_TCPI_BYTES_ACKED.unpack_from(raw, _TCPI_BYTES_ACKED_OFFSET)[0])


class Connection:
    def __init__(self, server: Server, sock: socket.socket, peer: str) -> None:
        self.server = server
        self.cfg = cfg = server.cfg
        self.sock = sock
        self.peer = peer
        self.loop = server.loop
        self.core = H2ServerCore(cfg, server.router, server.stats.protocol, time.monotonic())
        self.strategy = make_strategy(cfg.strategy, tls=cfg.tls, options=cfg.strategy_options)
        self.tls: Any = None  # tls_probe.MemoryBioTLS (membio)
        self.tls_stdlib: ssl.SSLSocket | None = None
        if cfg.tls and cfg.tls_mode == "membio":
            from tls_probe import InstrumentedTLS, MemoryBioTLS

            assert server.ssl_context is not None
            tls_class = InstrumentedTLS if cfg.tls_probe else MemoryBioTLS
            self.tls = tls_class(server.ssl_context, server_side=True)
        elif cfg.tls:
            assert server.ssl_context is not None
            # wrap_socket detaches the plain socket: from here on the SSLSocket is the socket.
            self.tls_stdlib = server.ssl_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False)
            self.sock = self.tls_stdlib
        self.out = WritePath(self.sock, self.strategy, server.stats.counters, tls=self.tls,
                             stdlib=self.tls_stdlib is not None)
        self.closed = False
        self.writing_registered = False
        self.handshake_done = not cfg.tls
        self.lock: threading.RLock | contextlib.nullcontext[None] = (
            threading.RLock() if cfg.threads else contextlib.nullcontext())
        self.window_open = threading.Condition(threading.Lock()) if cfg.threads else None

    # ---- start ---------------------------------------------------------------------------
    def start(self) -> None:
        if not self.cfg.tls:
            self._start_h2()
        self.loop.add_reader(self.sock.fileno(), self.on_readable)
        if self.tls_stdlib is not None:
            self._stdlib_handshake()

    def _start_h2(self) -> None:
        with self.lock:
            self.core.initiate()
        self.pump()

    # ---- reading -------------------------------------------------------------------------
    def on_readable(self) -> None:
        if self.closed:
            return
        if self.tls_stdlib is not None and not self.handshake_done:
            self._stdlib_handshake()  # recv() now would run the handshake implicitly
            return
        try:
            if self.tls_stdlib is None:
                # One reused receive buffer per server: recv(256 KiB) would allocate (and
                # count against every response) a 256 KiB object per read.
                buf = self.server.recv_buffer
                n = self.sock.recv_into(buf)
                data = bytes(buf[:n])
            else:
                data = self.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                ssl.SSLWantWriteError):
            return
        except (ConnectionError, OSError, ssl.SSLError) as exc:
            self.close(f"read failed: {exc.__class__.__name__}: {exc}")
            return
        if not data:
            self.close(None if not self.core.responses else "client closed mid-response")
            return
        self.core.bytes_arrived(time.monotonic())
        if self.tls is not None:
            with self.lock:  # stream threads write through the same SSL object
                plaintext = self._tls_receive(data)
            if plaintext is None:
                return
            data = plaintext
        if data:
            try:
                self._receive(data)
            except Exception as exc:  # one hostile peer must not leave a half-dead loop
                self._goaway_and_close(Close(f"internal error: {exc.__class__.__name__}: "
                                             f"{exc}", ErrorCodes.INTERNAL_ERROR))

    def _tls_receive(self, data: bytes) -> bytes | None:
        from tls_probe import TlsClosedError, TlsError

        tls = self.tls
        try:
            tls.feed_ciphertext(data)
            if not self.handshake_done:
                done = tls.do_handshake()
                out = tls.take_ciphertext()
                if out:
                    self.out.send_now(out)
                if not done:
                    return None
                self.handshake_done = True
                if tls.alpn_protocol != "h2":
                    self.close(f"ALPN {tls.alpn_protocol!r} is not h2")
                    return None
                self._start_h2()
            chunks = []
            try:
                while chunk := tls.read_plaintext(TLS_READ_BYTES):
                    chunks.append(chunk)
            except TlsClosedError as exc:
                if not exc.clean:
                    raise
                # close_notify: hand h2 what came before it, then close quietly.
                self.loop.call_soon(self.close, None)
            return b"".join(chunks)
        except (TlsError, ssl.SSLError) as exc:
            self.close(f"TLS error: {exc}")
            return None
        except OSError as exc:  # the handshake reply could not be sent: peer gone
            self.close(f"write failed during the TLS handshake: {exc}")
            return None

    def _stdlib_handshake(self) -> None:
        assert self.tls_stdlib is not None
        try:
            self.tls_stdlib.do_handshake()
        except ssl.SSLWantReadError:
            return
        except ssl.SSLWantWriteError:
            self.loop.call_later(0.001, self._stdlib_handshake)
            return
        except (ssl.SSLError, OSError) as exc:
            self.close(f"TLS error: {exc}")
            return
        self.handshake_done = True
        if self.tls_stdlib.selected_alpn_protocol() != "h2":
            self.close(f"ALPN {self.tls_stdlib.selected_alpn_protocol()!r} is not h2")
            return
        self._start_h2()
        # The client's preface may have arrived with its Finished and sit in OpenSSL's
        # buffer, where the socket will not signal it as readable.
        self.loop.call_soon(self.on_readable)

    def _receive(self, data: bytes) -> None:
        with self.lock:
            outcome = self.core.receive(data, time.monotonic())
        if outcome.close is not None:
            self._goaway_and_close(outcome.close)
            return
        self._after_receive(outcome)
        self.pump()
        if not self.closed:
            verdict = self.core.after_write(time.monotonic())
            if verdict is not None:
                self._goaway_and_close(verdict)

    def _after_receive(self, outcome: Outcome) -> None:
        if self.window_open is None:
            return
        if outcome.windows_opened:
            with self.window_open:
                self.window_open.notify_all()
        for resp in outcome.started:
            threading.Thread(target=self._stream_thread, args=(resp,), daemon=True,
                             name=f"stream-{resp.stream_id}").start()

    # ---- writing -------------------------------------------------------------------------
    def pump(self) -> None:
        """Write until the socket blocks or nothing is left (event-loop mode)."""
        if self.closed or not self.handshake_done:
            return
        try:
            with self.lock:
                for _ in range(PUMP_FLUSHES):
                    if not self.out.drive():
                        self._want_write(True)
                        return
                    # Stream threads write DATA themselves: the loop sends the rest.
                    segs = (self.core.control_flush() if self.cfg.threads
                            else self.core.next_flush())
                    if not segs:
                        self._want_write(False)
                        return
                    self.out.start(segs)
                self.loop.call_soon(self.pump)
        except (ConnectionError, OSError, ssl.SSLError) as exc:
            self.close(f"write failed: {exc.__class__.__name__}: {exc}")
        except Exception as exc:  # a bug costs this connection (one log line), never the loop
            self.close(f"internal error while writing: {exc.__class__.__name__}: {exc}")

    def _want_write(self, on: bool) -> None:
        if on == self.writing_registered or self.closed:
            return
        fd = self.sock.fileno()
        if on:
            self.loop.add_writer(fd, self.pump)
        else:
            self.loop.remove_writer(fd)
        self.writing_registered = on

    def _stream_thread(self, resp: Response) -> None:
        """Write one response from its own thread, one flush at a time.

        The lock is held only to build a flush and to push the connection's current plan
        as far as the socket takes it; waits (writability, window) happen without it, so
        a slow reader stalls its own streams, never the event loop. Whoever holds the
        lock continues the one current plan, so flushes never interleave on the wire.
        No deadline of its own: a stream that stops moving (zero window, a peer that
        stopped reading) is closed by the idle sweep's stall rule, as in loop mode.
        """
        core = self.core
        try:
            while not self.closed:
                blocked = window_shut = False
                with self.lock:
                    if self.out.busy:
                        blocked = not self.out.drive()  # finish the current flush first
                    else:
                        state = core.stream_state(resp)
                        if state == "done":
                            return
                        if state == "ready":
                            self.out.start(core.next_flush(only=resp))
                            blocked = not self.out.drive()
                        else:
                            window_shut = True
                if blocked:
                    self.out.wait_writable(0.05)
                elif window_shut:
                    assert self.window_open is not None
                    with self.window_open:
                        self.window_open.wait(0.05)
        except h2.exceptions.StreamClosedError:
            return  # this stream only; the connection carries on
        except Exception as exc:  # I/O errors, and bugs: this connection ends, one log line
            self.loop.call_soon_threadsafe(
                self.close, f"write failed: {exc.__class__.__name__}: {exc} (stream thread)")
        finally:
            if core.responses.get(resp.stream_id) is resp:
                core.responses.pop(resp.stream_id, None)

    # ---- timers and closing --------------------------------------------------------------
    def sweep(self, now_s: float) -> None:
        """The idle sweep's look at this connection (under its lock)."""
        if self.closed:
            return
        writing = self.out.busy
        acked = bytes_acked(self.sock) if writing else None
        verdict = self.core.check_timers(now_s, writing, acked)
        if verdict is not None:
            self._goaway_and_close(verdict)

    def _goaway_and_close(self, verdict: Close) -> None:
        if verdict.goaway is not None and self.core.initiated:
            with contextlib.suppress(Exception):
                self.out.send_best_effort(self.core.goaway(verdict.goaway))
        self.close(verdict.reason)

    def shutdown(self) -> None:
        """Server stopping: GOAWAY(NO_ERROR), then close."""
        self._goaway_and_close(Close(None, ErrorCodes.NO_ERROR))

    def tls_stats(self) -> Any:
        """This connection's tls_probe.TlsStats, None without the probe. Under the lock: in
        --threads mode a stream thread may be writing through the same counters."""
        if self.tls is None or not self.cfg.tls_probe:
            return None
        with self.lock:
            return self.tls.stats

    def close(self, reason: str | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.core.responses.clear()
        stats = self.server.stats
        stats.connections_closed += 1
        if reason:
            log.warning("connection %s closed: %s", self.peer, reason)
        fd = self.sock.fileno()
        if fd >= 0:
            self.loop.remove_reader(fd)
            if self.writing_registered:
                self.loop.remove_writer(fd)
        st = self.tls_stats()
        if st is not None:
            stats.add_closed_tls(st)
        self.server.connections.discard(self)
        if self.window_open is not None:
            with self.window_open:
                self.window_open.notify_all()
        # Counters are read from the kernel (sock_diag) before the socket is closed, off
        # the event loop; the reader closes it.
        self.server.tcp_reader.read_and_close(self.sock)
