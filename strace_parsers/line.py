"""The grammar of one strace output line (strace 5.x/6.x), as a pure function.

A line is `[prefix][timestamps][-i/-n fields]BODY`:
- prefix: `PID  ` (`-f -o`), `[pid  PID] ` (`-f` to stderr), `PID<comm> ` (`-Y`), or none;
- timestamps: `-t` `11:22:33`, `-tt` `11:22:33.123456`, `-ttt` `1700000000.123456[789]`,
  `-r` `   0.000123`, or `-tt -r` `11:22:33.123456 (+     0.000123)`;
- BODY: `name(args) = result [<duration>]`, `name(args <unfinished ...>`,
  `<... name resumed>args) = result`, `--- SIG... ---`, `+++ exited with N +++`, ...
Strings are C-escaped by strace, so `"` only ever opens or closes a string literal; that is
what lets the result be found reliably even when the data itself contains `) = 5`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from strace_parsers.events import ExitEvent, ProcessEvent, SignalEvent, StackFrameEvent

PREFIX_RE = re.compile(
    r"(?:(\d+)(?:<[^>\n]*>)? +|\[pid +(\d+)(?:<[^>\n]*>)?\] )?"
    r" *(?:(\d\d:\d\d:\d\d(?:\.\d+)?|\d+\.\d+)(?: \(\+ *\d+\.\d+\))? +)?"
    r"(?:\[ *[0-9a-f?]+\] +)*"
)
_CALL_RE = re.compile(r"([A-Za-z_][\w]*|\?+)\(")
_RESUMED_RE = re.compile(r"<\.\.\. ([A-Za-z_][\w]*|\?+) resumed> ?")
_SIGNAL_RE = re.compile(r"--- (?:stopped by (\S+)|(\S+)) ?(.*?) ?---")
_EXITED_RE = re.compile(r"\+\+\+ exited with (-?\d+) \+\+\+")
_KILLED_RE = re.compile(r"\+\+\+ killed by (\S+)( \(core dumped\))? \+\+\+")
_SUPERSEDED_RE = re.compile(r"\+\+\+ superseded by execve in pid (\d+) \+\+\+")
_STRACE_MSG_RE = re.compile(r"strace: (?:Process (\d+) (attached|detached|suspended)\b.*|.*)")
# only closed literals: an unclosed quote (a cut line) does not hide the result after it,
# which is also what the counting path's block regex assumes
_STRING_SPAN_RE = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_RESULT_AT_RE = re.compile(r"\) +(?== )")
_RESULT_RE = re.compile(
    r"= (0x[0-9a-fA-F]+|-?\d+|\?)(.*?)(?: <(\d+\.\d+)>)?", re.DOTALL
)
_ERRNO_RE = re.compile(r" ([A-Z][A-Z0-9_]*|E\?+|\d+) \(")
_UNFINISHED = "<unfinished ...>"
_DETACHED = "<detached ...>"


@dataclass(slots=True)
class CallPart:
    """A syscall line, or one half of one: state is complete, unfinished, resumed, detached."""

    state: str
    pid: int | None
    time_s: float | None
    name: str
    args: str
    ret_text: str = ""
    retval: int | None = None
    errno: str | None = None
    duration_s: float | None = None
    returned: bool = False


def parse_time(text: str | None) -> float | None:
    """`-ttt`/`-r` seconds as float; `-t`/`-tt` wall clock as seconds since midnight."""
    if not text:
        return None
    if ":" in text:
        h, m, s = text.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    return float(text)


def _string_spans(body: str) -> list[tuple[int, int]]:
    if '"' not in body:
        return []
    return [m.span() for m in _STRING_SPAN_RE.finditer(body)]


def split_result(body: str) -> tuple[str, re.Match[str]] | None:
    """Split `args) = result` at the last `) = ` that lies outside string literals and is
    followed by a well-formed result. Returns (args, result match) or None."""
    candidates = [m.start() for m in _RESULT_AT_RE.finditer(body)]
    if not candidates:
        return None
    spans = _string_spans(body)
    for pos in reversed(candidates):
        if any(a <= pos < b for a, b in spans):
            continue
        eq = body.index("=", pos)
        m = _RESULT_RE.fullmatch(body, eq)
        if m is not None:
            return body[:pos], m
    return None


def result_int(ret: str) -> int:
    """A result `0x1f` or `-12` as an int; `012` is decimal (int(x, 0) would refuse it)."""
    return int(ret, 16) if ret.startswith("0x") else int(ret)


def result_fields(m: re.Match[str]) -> tuple[str, int | None, str | None, float | None, bool]:
    """(ret_text, retval, errno, duration_s, returned) from a `_RESULT_RE` match."""
    ret, rest, dur = m.group(1), m.group(2), m.group(3)
    errno = None
    if ret == "-1" or ret == "?":
        em = _ERRNO_RE.match(rest)
        if em is not None:
            errno = em.group(1)
    retval = None if ret == "?" else result_int(ret)
    # `= ?` alone: the process went away inside the call; strace -c does not count it.
    # `= ? <unavailable>`: strace could not read the result, but the call did return.
    returned = ret != "?" or errno is not None or rest.startswith(" <unavailable>")
    return ret + rest, retval, errno, (float(dur) if dur is not None else None), returned


def parse_call_body(
    state: str, pid: int | None, time_s: float | None, name: str, body: str
) -> CallPart | None:
    """Parse what follows `name(` (state "complete") or `<... name resumed>` ("resumed")."""
    stripped = body.rstrip()
    for marker, new_state in ((_UNFINISHED, "unfinished"), (_DETACHED, "detached")):
        if stripped.endswith(marker) and state == "complete":
            args = stripped[: -len(marker)]
            if args.endswith(" "):
                args = args[:-1]  # strace puts one space before the marker
            return CallPart(new_state, pid, time_s, name, args)
    split = split_result(body)
    if split is None:
        return None
    args, m = split
    if state == "resumed" and args.startswith(" " + _UNFINISHED):
        args = args[len(_UNFINISHED) + 1 :]  # `<... x resumed> <unfinished ...>) = ?`
    ret_text, retval, errno, dur, returned = result_fields(m)
    return CallPart(state, pid, time_s, name, args, ret_text, retval, errno, dur, returned)


LineResult = CallPart | SignalEvent | ExitEvent | ProcessEvent | StackFrameEvent | None


def parse_line(text: str) -> LineResult:
    """Parse one line (without its newline). None means the grammar does not know it.

    Blank lines and summary-table lines are handled by the caller (stream/summary_table).
    """
    if text.startswith("strace: "):
        m = _STRACE_MSG_RE.match(text)
        if m is not None and m.group(1):
            return ProcessEvent(int(m.group(1)), m.group(2), text)
        return ProcessEvent(None, "note", text)
    if text.startswith(" > "):
        return StackFrameEvent(text[3:])
    p = PREFIX_RE.match(text)
    if p is None:  # cannot happen: every group is optional
        return None
    pid_s = p.group(1) or p.group(2)
    pid = int(pid_s) if pid_s else None
    pos = p.end()
    first = text[pos : pos + 1]
    if first == "<":
        m = _RESUMED_RE.match(text, pos)
        if m is None:
            return None
        return parse_call_body(
            "resumed", pid, parse_time(p.group(3)), m.group(1), text[m.end() :]
        )
    if first == "-":
        m = _SIGNAL_RE.fullmatch(text, pos)
        if m is None:
            return None
        if m.group(1):
            return SignalEvent(pid, parse_time(p.group(3)), m.group(1), m.group(3), True)
        return SignalEvent(pid, parse_time(p.group(3)), m.group(2), m.group(3))
    if first == "+":
        t = parse_time(p.group(3))
        m = _EXITED_RE.fullmatch(text, pos)
        if m is not None:
            return ExitEvent(pid, t, int(m.group(1)))
        m = _KILLED_RE.fullmatch(text, pos)
        if m is not None:
            return ExitEvent(pid, t, None, m.group(1), m.group(2) is not None)
        m = _SUPERSEDED_RE.fullmatch(text, pos)
        if m is not None:
            return ProcessEvent(pid, "superseded", text[pos:])
        return None
    m = _CALL_RE.match(text, pos)
    if m is None:
        return None
    return parse_call_body("complete", pid, parse_time(p.group(3)), m.group(1), text[m.end() :])


def split_injected_message(text: str) -> tuple[str, str] | None:
    """strace writes `strace: Process N attached` to stderr even in the middle of a trace
    line when both go to the terminal; return (line head, message) for such a line."""
    i = text.find("strace: Process ")
    if i <= 0:
        return None
    return text[:i], text[i:]
