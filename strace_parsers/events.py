"""Typed events read from strace output: one completed call, signal, exit, or note per event."""

from __future__ import annotations

from dataclasses import dataclass

#: Syscalls that put bytes into a file descriptor; `bytes` sums what they returned.
WRITE_FAMILY: frozenset[str] = frozenset(
    {
        "write", "writev", "pwrite64", "pwritev", "pwritev2", "send", "sendto", "sendmsg",
        "sendmmsg", "sendfile", "sendfile64", "splice",
    }
)

#: Write-family calls that pass a list of buffers (iovecs).
GATHER_WRITES: frozenset[str] = frozenset({"writev", "pwritev", "pwritev2", "sendmsg", "sendmmsg"})


@dataclass(slots=True)
class SyscallEvent:
    """One completed system call; an `<unfinished ...>` start and its `<... resumed>` end
    are joined into one event with the arguments of both halves.

    `returned` is False when the process died inside the call (`= ?` with no errno) or the
    log ended first: strace's own `-c` summary does not count such calls, and neither do we.
    """

    pid: int | None
    time_s: float | None
    name: str
    args: str
    retval: int | None
    errno: str | None
    duration_s: float | None
    ret_text: str = ""
    returned: bool = True
    resumed: bool = False
    orphan: bool = False
    fd: int | None = None
    fd_kind: str | None = None
    fd_proto: str | None = None
    endpoint: str | None = None
    requested_bytes: int | None = None
    iov_count: int | None = None

    @property
    def failed(self) -> bool:
        """True when the kernel reported an error (`-1 E...` or `? ERESTART...`)."""
        return self.errno is not None

    @property
    def written_bytes(self) -> int | None:
        """Bytes a successful write-family call moved, else None."""
        if self.name not in WRITE_FAMILY or self.errno is not None or self.retval is None:
            return None
        return self.retval


@dataclass(slots=True, frozen=True)
class SignalEvent:
    """`--- SIGCHLD {...} ---` (delivered) or `--- stopped by SIGSTOP ---`."""

    pid: int | None
    time_s: float | None
    signal: str
    info: str
    stopped: bool = False


@dataclass(slots=True, frozen=True)
class ExitEvent:
    """`+++ exited with N +++`, `+++ killed by SIG... [(core dumped)] +++`."""

    pid: int | None
    time_s: float | None
    status: int | None
    signal: str | None = None
    core_dumped: bool = False


@dataclass(slots=True, frozen=True)
class ProcessEvent:
    """Process bookkeeping: attached, detached, superseded by execve, other strace notes."""

    pid: int | None
    action: str
    text: str


@dataclass(slots=True, frozen=True)
class StackFrameEvent:
    """One ` > lib(func+0x..) [0x..]` line printed by `strace -k` after a call."""

    text: str


@dataclass(slots=True, frozen=True)
class SummaryRowEvent:
    """One row of the `-c`/`-C` summary table that strace prints at the end (or its total)."""

    name: str
    calls: int
    errors: int
    seconds: float | None
    is_total: bool = False


@dataclass(slots=True, frozen=True)
class TruncatedLineEvent:
    """The last line of a log whose strace was killed mid-write: kept, but not a call."""

    file: str
    line: int
    text: str


@dataclass(slots=True, frozen=True)
class UnparsedLineEvent:
    """A line the grammar does not know; `Summary.unparsed` counts these."""

    file: str
    line: int
    text: str


Event = (
    SyscallEvent | SignalEvent | ExitEvent | ProcessEvent | StackFrameEvent | SummaryRowEvent
    | TruncatedLineEvent | UnparsedLineEvent
)
