"""DATA write strategies: how the ordered segments of one flush become socket calls.

Pure code. A flush is a list of segments in wire order: ``bytes`` that the server owns
(HEADERS, SETTINGS, WINDOW_UPDATE and the 9-byte DATA frame headers) and ``memoryview``
payloads that point into the response body. A strategy decides the shape of the writes:

- cleartext: ``plan(segments)`` yields :class:`SocketCall` s (``send`` or ``sendmsg``);
- TLS (membio): ``plan_tls(segments)`` yields :class:`SslWrite` (one SSL_write each) and
  :class:`CipherFlush` (send the ciphertext produced so far, in one call).

Plans are generators: the I/O shell pulls the next step only once the previous socket
call has completed, so a strategy that reuses a scratch buffer (``coalesce``) never has
two records' worth of copies alive, and ciphertext never piles up behind a slow reader.

Adding a strategy is one class here and one line in :data:`STRATEGIES`: the command line,
the runner, the server, the pytest plugin and the tests' parametrisation all read the
registry (what a strategy supports: TLS only, its options and their flags, its hooks).
A strategy that lives elsewhere registers itself with :func:`register` in a module named
by ``WRITESHAPE_STRATEGY_MODULES`` (comma-separated), which every process imports when it
reads the registry, server processes included.
"""

from __future__ import annotations

import importlib
import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from toolkit.errors import UsageError

Buffer = bytes | bytearray | memoryview

# Linux UIO_MAXIOV; sendmsg with more iovecs fails with EMSGSIZE.
IOV_MAX = 1024
# Rust h2 (framed_write.rs): payloads under this are copied behind their header.
CHAIN_THRESHOLD_BYTES = 256
# Largest TLS plaintext record (RFC 8446 5.1).
TLS_MAX_RECORD_PLAINTEXT_BYTES = 16384
MSG_MORE = getattr(socket, "MSG_MORE", 0x8000)


@dataclass(frozen=True, slots=True)
class SocketCall:
    """One socket write: ``send(buffers[0], flags)`` or ``sendmsg(buffers, [], flags)``."""

    method: Literal["send", "sendmsg"]
    buffers: tuple[Buffer, ...]
    flags: int = 0

    @property
    def nbytes(self) -> int:
        return sum(map(len, self.buffers))


@dataclass(frozen=True, slots=True)
class SslWrite:
    """One SSL_write of ``plaintext`` (OpenSSL cuts it into records of <= 16 KiB)."""

    plaintext: Buffer


@dataclass(frozen=True, slots=True)
class CipherFlush:
    """Send the ciphertext of the SSL_writes since the last flush, in one socket call.

    ``send`` sends it as one buffer (joined if several SSL_writes came before);
    ``sendmsg`` gathers the ciphertext of each SSL_write as its own iovec.
    """

    method: Literal["send", "sendmsg"] = "send"
    flags: int = 0


TlsStep = SslWrite | CipherFlush


def _chunks(items: Sequence[Buffer], n: int) -> Iterator[tuple[Buffer, ...]]:
    for i in range(0, len(items), n):
        yield tuple(items[i:i + n])


def is_payload(segment: Buffer) -> bool:
    """Payloads travel as memoryviews of the body; everything else is server-owned bytes."""
    return isinstance(segment, memoryview)


def chain_groups(segments: Sequence[Buffer], threshold: int) -> list[Buffer]:
    """Rust h2's rule: copy small things behind the previous header, chain large payloads."""
    out: list[Buffer] = []
    pending = bytearray()
    for seg in segments:
        if is_payload(seg) and len(seg) >= threshold:
            if pending:
                out.append(bytes(pending))
                pending.clear()
            out.append(seg)
        else:
            pending += seg
    if pending:
        out.append(bytes(pending))
    return out


@dataclass(frozen=True)
class StrategyOption:
    """An option a strategy takes: its keyword, its `writeshape serve` flag, its check.

    ``kind`` is ``bool`` (a flag without a value) or ``int``; ``check`` returns what is
    wrong with a value (one line) or None.
    """

    name: str
    flag: str
    kind: type
    default: Any
    help: str
    check: Callable[[Any], str | None] = lambda _value: None
    tls_only: bool = False  # the option shapes TLS records: meaningless on h2c

    def argv(self, value: Any) -> list[str]:
        """The serve arguments that set ``value`` (none for the default)."""
        if value == self.default:
            return []
        return [self.flag] if self.kind is bool else [self.flag, str(value)]


@dataclass(frozen=True)
class Shape:
    """What a strategy promises about its writes. The shape, memory and TLS-record tests
    check every registered strategy against its own declaration, so a new strategy is
    tested without a test file changing.

    ``syscalls``: the syscalls its h2c plans issue (strace's names); ``calls_per_frame``:
    h2c socket calls per DATA frame (0: a few per flush, whatever the frames);
    ``copies_flush``: h2c flushes are copied into one new buffer (memory per response
    grows with the body); ``header_records``: under TLS every 9-byte frame header
    becomes a record of its own (about twice the records of whole 16 KiB records).
    """

    syscalls: frozenset[str] = frozenset({"sendmsg"})
    calls_per_frame: int = 0
    copies_flush: bool = False
    header_records: bool = True


class Strategy:
    """Base: a strategy object is made per connection (it may own scratch buffers).

    Declarations the rest of the toolkit reads: ``tls_only``, ``options`` (keywords of
    ``__init__``, each with its serve flag) and the idle hook (``idle_reset_after_s``:
    after that long without writes the server calls ``on_idle``)."""

    name: ClassVar[str]
    description: ClassVar[str]
    tls_only: ClassVar[bool] = False
    options: ClassVar[tuple[StrategyOption, ...]] = ()
    shape: ClassVar[Shape] = Shape()

    @property
    def idle_reset_after_s(self) -> float | None:
        return None

    def on_idle(self) -> None:
        """The connection wrote nothing for ``idle_reset_after_s``."""

    def plan(self, segments: Sequence[Buffer]) -> Iterator[SocketCall]:
        raise NotImplementedError

    def plan_tls(self, segments: Sequence[Buffer]) -> Iterator[TlsStep]:
        raise NotImplementedError


class Single(Strategy):
    name = "single"
    description = "copy the whole flush into one buffer, one send (HTTP.jl before the PR)"
    shape = Shape(syscalls=frozenset({"sendto"}), copies_flush=True, header_records=False)

    def plan(self, segments: Sequence[Buffer]) -> Iterator[SocketCall]:
        if segments:
            yield SocketCall("send", (b"".join(segments),))

    def plan_tls(self, segments: Sequence[Buffer]) -> Iterator[TlsStep]:
        if segments:
            yield SslWrite(b"".join(segments))
            yield CipherFlush("send")


class Split(Strategy):
    name = "split"
    description = "every segment its own send: 9-byte header, then payload (the PR)"
    shape = Shape(syscalls=frozenset({"sendto"}), calls_per_frame=2)

    def plan(self, segments: Sequence[Buffer]) -> Iterator[SocketCall]:
        for seg in segments:
            yield SocketCall("send", (seg,))

    def plan_tls(self, segments: Sequence[Buffer]) -> Iterator[TlsStep]:
        # What OpenSSL's socket BIO does: each SSL_write goes out as soon as it is made.
        for seg in segments:
            yield SslWrite(seg)
            yield CipherFlush("send")


class Writev(Strategy):
    name = "writev"
    description = "one sendmsg gathering all segments (IOV_MAX per call)"
    shape = Shape(syscalls=frozenset({"sendmsg"}))

    def plan(self, segments: Sequence[Buffer]) -> Iterator[SocketCall]:
        for chunk in _chunks(segments, IOV_MAX):
            yield SocketCall("sendmsg", chunk)

    def plan_tls(self, segments: Sequence[Buffer]) -> Iterator[TlsStep]:
        # No SSL_writev exists: one SSL_write per segment, ciphertext gathered per flush.
        for i, seg in enumerate(segments, 1):
            yield SslWrite(seg)
            if i % IOV_MAX == 0:
                yield CipherFlush("sendmsg")
        if len(segments) % IOV_MAX:
            yield CipherFlush("sendmsg")


class Cork(Strategy):
    name = "cork"
    description = "like split, with MSG_MORE on all but the last segment of a flush"
    shape = Shape(syscalls=frozenset({"sendto"}), calls_per_frame=2)

    def plan(self, segments: Sequence[Buffer]) -> Iterator[SocketCall]:
        last = len(segments) - 1
        for i, seg in enumerate(segments):
            yield SocketCall("send", (seg,), 0 if i == last else MSG_MORE)

    def plan_tls(self, segments: Sequence[Buffer]) -> Iterator[TlsStep]:
        last = len(segments) - 1
        for i, seg in enumerate(segments):
            yield SslWrite(seg)
            yield CipherFlush("send", 0 if i == last else MSG_MORE)


class Chain(Strategy):
    name = "chain"
    description = "Rust h2: payloads < 256 B copied behind their header, larger ones chained"
    shape = Shape(syscalls=frozenset({"sendmsg"}))
    threshold_bytes = CHAIN_THRESHOLD_BYTES

    def plan(self, segments: Sequence[Buffer]) -> Iterator[SocketCall]:
        for chunk in _chunks(chain_groups(segments, self.threshold_bytes), IOV_MAX):
            yield SocketCall("sendmsg", chunk)

    def plan_tls(self, segments: Sequence[Buffer]) -> Iterator[TlsStep]:
        groups = chain_groups(segments, self.threshold_bytes)
        for i, group in enumerate(groups, 1):
            yield SslWrite(group)
            if i % IOV_MAX == 0:  # each SSL_write's ciphertext is one iovec
                yield CipherFlush("sendmsg")
        if len(groups) % IOV_MAX:
            yield CipherFlush("sendmsg")


class Coalesce(Strategy):
    """Fill whole TLS records in a reused scratch buffer: fewest records, bounded copy.

    With ``dynamic_records`` the first bytes of a connection go out in records of about
    one TCP segment, then full 16 KiB records (Go crypto/tls, h2o, nghttpx do this so
    the client can decrypt the first bytes before a whole 16 KiB record has arrived).

    ``records_per_send`` (default 1) gathers the ciphertext of that many records into one
    sendmsg: fewer syscalls for at most that many records of ciphertext held.
    """

    name = "coalesce"
    description = "TLS: fill 16 KiB records from a reused scratch buffer, one SSL_write each"
    shape = Shape(syscalls=frozenset(), header_records=False)
    tls_only = True
    options = (
        StrategyOption("dynamic_records", "--dynamic-records", bool, False,
                       "small TLS records first, and again after 1 s idle", tls_only=True),
        StrategyOption("records_per_send", "--coalesce-records-per-send", int, 1,
                       "records gathered into one sendmsg",
                       check=lambda n: None if 1 <= n <= IOV_MAX
                       else f"must be 1..{IOV_MAX} (IOV_MAX)"),
    )
    small_record_bytes = 1369  # 1460-byte MSS minus TLS 1.3 overhead (22) and TCP options
    small_record_window_bytes = 128 * 1024  # Go: grow to full records after 128 KiB
    # After a pause the congestion window has shrunk again (RFC 7661): start over with
    # small records, as nghttpx (tls-dyn-rec-idle-timeout) and h2o do.
    dynamic_record_idle_s = 1.0

    def __init__(self, dynamic_records: bool = False, records_per_send: int = 1) -> None:
        if not 1 <= records_per_send <= IOV_MAX:
            raise ValueError(f"records_per_send must be 1..{IOV_MAX}")
        self._scratch = bytearray(TLS_MAX_RECORD_PLAINTEXT_BYTES)
        self.dynamic_records = dynamic_records
        self.records_per_send = records_per_send
        self.plaintext_written_bytes = 0

    @property
    def idle_reset_after_s(self) -> float | None:
        return self.dynamic_record_idle_s if self.dynamic_records else None

    def on_idle(self) -> None:
        """Start with small records again."""
        self.plaintext_written_bytes = 0

    def _record_limit(self) -> int:
        if self.dynamic_records and self.plaintext_written_bytes < self.small_record_window_bytes:
            return self.small_record_bytes
        return TLS_MAX_RECORD_PLAINTEXT_BYTES

    def plan(self, segments: Sequence[Buffer]) -> Iterator[SocketCall]:
        raise ValueError("coalesce is a TLS strategy (use --tls)")

    def plan_tls(self, segments: Sequence[Buffer]) -> Iterator[TlsStep]:
        scratch = memoryview(self._scratch)
        fill = 0
        unsent = 0  # records written since the last flush (mod records_per_send)
        limit = self._record_limit()
        for seg in segments:
            view = seg if isinstance(seg, memoryview) else memoryview(seg)
            pos = 0
            while pos < len(view):
                take = min(limit - fill, len(view) - pos)
                scratch[fill:fill + take] = view[pos:pos + take]
                fill += take
                pos += take
                if fill == limit:
                    unsent = (unsent + 1) % self.records_per_send
                    yield from self._emit(scratch, fill, unsent == 0)
                    fill = 0
                    limit = self._record_limit()
        if fill or unsent:
            yield from self._emit(scratch, fill, True)

    def _emit(self, scratch: memoryview, fill: int, flush: bool) -> Iterator[TlsStep]:
        # The executor runs SSL_write before pulling the next step, so reusing the
        # scratch buffer afterwards is safe.
        if fill:
            self.plaintext_written_bytes += fill
            yield SslWrite(scratch[:fill])
        if flush:
            yield CipherFlush("send" if self.records_per_send == 1 else "sendmsg")


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (Single, Split, Writev, Cork, Chain, Coalesce)
}
TRANSPORTS = ("h2c", "h2")
PLUGIN_MODULES_ENV = "WRITESHAPE_STRATEGY_MODULES"


def register(cls: type[Strategy]) -> type[Strategy]:
    """Add a strategy to the registry (usable as a class decorator)."""
    STRATEGIES[cls.name] = cls
    return cls


_plugin_problem: str | None = None


def _load_plugin_modules() -> None:
    """Import the modules named by WRITESHAPE_STRATEGY_MODULES. A failure is kept and
    raised (one line) by the first lookup, not at import: the CLI must be able to say it."""
    global _plugin_problem
    for module in filter(None, (m.strip() for m in
                                os.environ.get(PLUGIN_MODULES_ENV, "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            _plugin_problem = f"{PLUGIN_MODULES_ENV}: cannot import {module!r}: {exc}"


def _registry() -> dict[str, type[Strategy]]:
    if _plugin_problem is not None:
        raise UsageError(_plugin_problem)
    return STRATEGIES



def supports(name: str, transport: str) -> bool:
    """Whether strategy ``name`` can serve ``transport`` ("h2c" or "h2")."""
    cls = _registry().get(name)
    return cls is not None and (transport == "h2" or not cls.tls_only)


def strategy_names(transport: str | None = None) -> tuple[str, ...]:
    """Every registered strategy, or those that serve ``transport``."""
    return tuple(n for n in _registry() if transport is None or supports(n, transport))


def check_strategy(name: str, transport: str | None = None) -> type[Strategy]:
    """The class of ``name``; a UsageError naming the choices or the missing transport."""
    cls = _registry().get(name)
    if cls is None:
        raise UsageError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    if transport is not None and transport not in TRANSPORTS:
        raise UsageError(f"unknown transport {transport!r}; choose h2c or h2")
    if transport is not None and not supports(name, transport):
        raise UsageError(f"{name} is a TLS strategy: it needs TLS (transport h2 / --tls)")
    return cls


def all_options() -> dict[str, StrategyOption]:
    """Every option of every registered strategy, by keyword (flags are unique)."""
    out: dict[str, StrategyOption] = {}
    for cls in STRATEGIES.values():
        for opt in cls.options:
            out.setdefault(opt.name, opt)
    return out


def check_options(name: str, options: Mapping[str, Any], *, tls: bool) -> list[str]:
    """Validate ``options`` for strategy ``name``; return the notes for options that are
    valid but that this strategy ignores (compare's --server-args passes the same options
    to every server). A bad value or an option that needs TLS raises UsageError."""
    known = all_options()
    own = {o.name for o in check_strategy(name).options}
    ignored = []
    for key, value in options.items():
        opt = known.get(key)
        if opt is None:
            raise UsageError(f"no strategy takes an option {key!r}")
        problem = opt.check(value)
        if problem:
            raise UsageError(f"{opt.flag} {problem}")
        if value == opt.default:
            continue
        if opt.tls_only and not tls:
            raise UsageError(f"{opt.flag} sizes TLS records: it needs --tls")
        if key not in own:
            ignored.append(opt.flag)
    if not ignored:
        return []
    owners = sorted({c.name for c in STRATEGIES.values()
                     for o in c.options if o.flag in ignored})
    return [f"{' and '.join(ignored)}: {', '.join(owners)} only; "
            f"strategy {name} ignores it"]


def make_strategy(name: str, *, tls: bool, options: Mapping[str, Any] | None = None
                  ) -> Strategy:
    """A fresh strategy object (one per connection) with the options it declares."""
    cls = check_strategy(name, "h2" if tls else "h2c")
    own = {o.name for o in cls.options}
    return cls(**{k: v for k, v in (options or {}).items() if k in own})


def wire_bytes(calls: Sequence[SocketCall]) -> bytes:
    """What the calls put on the wire, in order (for tests and checks)."""
    return b"".join(bytes(b) for c in calls for b in c.buffers)


# Last: a plugin module imports this one to register its strategy.
_load_plugin_modules()
