"""What counting a log gives: per-syscall tallies, sliced by fd kind and pid, plus how the
count went (lines, unparsed, warnings, speed). Plain data; `to_json` is the
`writeshape syscalls --json` document."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from strace_parsers.events import WRITE_FAMILY, SummaryRowEvent

FD_KINDS = ("socket", "pipe", "file", "other")


@dataclass(slots=True)
class SyscallStats:
    """Tallies for one syscall (in one slice: all, one fd kind, one pid).

    calls: calls that returned (as strace -c counts); errors: of those, failed ones;
    bytes: returned bytes of successful write-family calls; seconds: summed `-T` time
    (timed_calls says how many calls carried one); unreturned: calls the process never
    came back from (`= ?`) or that the log cut off; requested_bytes / requested_calls:
    what gather writes (writev, sendmsg, ...) asked to write, summed over their iovecs
    where strace printed all of them; iov_count: iovecs passed to writev/sendmsg-style
    calls; size_histogram: successful write sizes by power-of-two bucket (key 2**k counts
    sizes in (2**(k-1), 2**k], so key 1 counts 1-byte writes; key 0 counts 0).
    """

    calls: int = 0
    errors: int = 0
    bytes: int = 0
    seconds: float = 0.0
    timed_calls: int = 0
    unreturned: int = 0
    requested_bytes: int = 0
    requested_calls: int = 0
    iov_count: int = 0
    size_histogram: dict[int, int] = field(default_factory=dict)

    def merge(self, other: SyscallStats) -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.bytes += other.bytes
        self.seconds += other.seconds
        self.timed_calls += other.timed_calls
        self.unreturned += other.unreturned
        self.requested_bytes += other.requested_bytes
        self.requested_calls += other.requested_calls
        self.iov_count += other.iov_count
        for k, v in other.size_histogram.items():
            self.size_histogram[k] = self.size_histogram.get(k, 0) + v

    def to_json(self) -> dict[str, Any]:
        """The contract's calls/errors/bytes/seconds plus the extra tallies.

        seconds is null when no call carried a `-T` duration: not measured, not zero.
        """
        return {
            "calls": self.calls,
            "errors": self.errors,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 9) if self.timed_calls else None,
            "timed_calls": self.timed_calls,
            "unreturned": self.unreturned,
            "requested_bytes": self.requested_bytes,
            "requested_calls": self.requested_calls,
            "iov_count": self.iov_count,
            "size_histogram": {str(k): v for k, v in sorted(self.size_histogram.items())},
        }


@dataclass(slots=True)
class Summary:
    """Everything counted over a set of logs.

    `warnings` holds one line per reason not to trust the counts (an empty log, no
    strace output, a last line cut short, a pid filter that matched nothing); with
    `strict=True` the first one is raised instead. `implementation` says which counter
    ran ("c" or "python") and `seconds` how long counting took.
    """

    files: list[str] = field(default_factory=list)
    lines: int = 0
    unparsed: int = 0
    truncated: int = 0
    orphan_resumed: int = 0
    unparsed_examples: list[dict[str, Any]] = field(default_factory=list)
    truncated_examples: list[dict[str, Any]] = field(default_factory=list)
    syscalls: dict[str, SyscallStats] = field(default_factory=dict)
    by_fd_kind: dict[str, dict[str, SyscallStats]] = field(default_factory=dict)
    by_pid: dict[int, dict[str, SyscallStats]] = field(default_factory=dict)
    strace_summary: dict[str, SummaryRowEvent] = field(default_factory=dict)
    annotated_calls: int = 0
    signals: int = 0
    exits: int = 0
    warnings: list[str] = field(default_factory=list)
    implementation: str | None = None
    seconds: float | None = None

    @property
    def lines_per_s(self) -> float | None:
        """Lines counted per second of wall time, when timed."""
        if not self.seconds:
            return None
        return self.lines / self.seconds

    def write_calls(self) -> int:
        """Calls of the write family, all syscalls together."""
        return sum(s.calls for n, s in self.syscalls.items() if n in WRITE_FAMILY)

    def to_json(self) -> dict[str, Any]:
        """The `writeshape syscalls --json` document (contract keys plus extras)."""

        def table(t: dict[str, SyscallStats]) -> dict[str, Any]:
            return {n: s.to_json() for n, s in sorted(t.items())}

        lps = self.lines_per_s
        out: dict[str, Any] = {
            "files": list(self.files),
            "lines": self.lines,
            "unparsed": self.unparsed,
            "unparsed_examples": list(self.unparsed_examples),
            "syscalls": table(self.syscalls),
            "truncated": self.truncated,
            "orphan_resumed": self.orphan_resumed,
            "by_fd_kind": {k: table(v) for k, v in sorted(self.by_fd_kind.items())},
            "by_pid": {str(k): table(v) for k, v in sorted(self.by_pid.items())},
            "meta": {
                "implementation": self.implementation,
                "seconds": None if self.seconds is None else round(self.seconds, 6),
                "lines_per_s": None if lps is None else round(lps),
                "warnings": list(self.warnings),
            },
        }
        if self.strace_summary:
            out["strace_summary"] = {
                n: {"calls": r.calls, "errors": r.errors, "seconds": r.seconds}
                for n, r in self.strace_summary.items()
            }
        return out
