"""Values inside a strace line: C strings, fd annotations (`-y`/`-yy`), argument lists, iovecs.

Pure functions over text; none of them raises on malformed input (they return None or a
best-effort value), because the line grammar must survive any text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "v": "\v", "f": "\f", "a": "\a", "b": "\b"}


def _unescape_one(m: re.Match[str]) -> str:
    tok = m.group(1)
    if tok[0] == "x" and len(tok) == 3:
        return chr(int(tok[1:], 16))
    if tok[0] in "01234567":
        return chr(int(tok, 8) & 0xFF)
    return _SIMPLE_ESCAPES.get(tok, tok)


def unescape(text: str) -> str:
    """Decode strace's C escapes (`\\"`, `\\\\`, `\\n`, octal `\\377`, `-xx` hex `\\x41`).

    Each escaped byte becomes the code point of that byte (latin-1 style), so that
    `decode_string(...).encode("latin-1")` gives back the raw bytes.
    """
    if "\\" not in text:
        return text
    return _ESCAPE_RE.sub(_unescape_one, text)


_STRING_RE = re.compile(r'"((?:[^"\\]|\\.)*)"(\.\.\.)?', re.DOTALL)


def decode_string(token: str) -> tuple[bytes, bool] | None:
    """`"ab\\n"...` -> (b"ab\\n", truncated=True); None if `token` is not a string literal."""
    m = _STRING_RE.fullmatch(token.strip())
    if m is None:
        return None
    return unescape(m.group(1)).encode("latin-1", "replace"), m.group(2) is not None


_SPLIT_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*(?:"|$)|[\w]<|[(){}\[\],]', re.DOTALL)


def split_args(args: str) -> list[str]:
    """Split an argument list on top-level commas: strings, (), [], {} and fd annotations
    (`5<TCP:[a->b]>`, whose `->` and nested `<char 1:3>` are not brackets) stay whole."""
    out: list[str] = []
    depth = 0
    start = 0
    pos = 0
    n = len(args)
    search = _SPLIT_TOKEN_RE.search
    while pos < n:
        m = search(args, pos)
        if m is None:
            break
        tok = m.group()
        pos = m.end()
        c = tok[0]
        if c == '"':
            continue
        if len(tok) == 2:  # `3<...>` annotation: skip to its matching '>' (one nesting level)
            level = 1
            while pos < n and level:
                ch = args[pos]
                if ch == "<":
                    level += 1
                elif ch == ">" and args[pos - 1] != "-":
                    level -= 1
                pos += 1
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth = max(0, depth - 1)
        elif depth == 0:
            out.append(args[start : m.start()].strip())
            start = pos
    tail = args[start:].strip()
    if tail or out:
        out.append(tail)
    return out


@dataclass(slots=True, frozen=True)
class FdInfo:
    """What `-y`/`-yy` says about a file descriptor."""

    fd: int
    kind: str | None  # "socket" | "pipe" | "file" | "other" | None (no annotation)
    proto: str | None  # "TCP", "TCPv6", "UDP", "UNIX-STREAM", ... (only with -yy)
    endpoint: str | None  # "127.0.0.1:1->127.0.0.1:2", a path, an inode


_BRACKET_RE = re.compile(r"([A-Za-z][\w.+/-]*):\[(.*)\]", re.DOTALL)


@lru_cache(maxsize=4096)
def classify_annotation(annotation: str) -> tuple[str, str | None, str | None]:
    """`TCP:[1.2.3.4:5->6.7.8.9:10]` -> ("socket", "TCP", "1.2.3.4:5->6.7.8.9:10").

    `socket:[123]` (plain -y) is a socket of unknown protocol, `pipe:[..]` a pipe, a path
    a file (devices included), anything else (`anon_inode:[eventfd]`, ...) "other".
    `-xx` hex-encodes the annotation text; it is decoded first.
    """
    text = unescape(annotation) if "\\" in annotation else annotation
    if text.startswith("/"):
        lt = text.find("<")  # `/dev/null<char 1:3>`: device numbers follow the path
        return "file", None, text[:lt] if lt > 0 else text
    m = _BRACKET_RE.fullmatch(text)
    if m is None:
        return "other", None, text or None
    token, inside = m.group(1), m.group(2)
    if token == "socket":
        return "socket", None, inside
    if token == "pipe":
        return "pipe", None, inside
    if token[0].isupper():
        return "socket", token, inside
    return "other", None, inside


# first argument: an fd number, optionally followed by its <annotation>; the annotation
# ends at the '>' that is followed by the next argument or the end of the list
_FD_ARG_RE = re.compile(r"\s*(-?\d+)(?:<(.*?)>)?(?=, |,|\s*$| <)", re.DOTALL)


def parse_fd(arg_text: str) -> FdInfo | None:
    """Parse an fd argument such as `5<TCP:[127.0.0.1:8443->127.0.0.1:51234]>` or `3`."""
    m = _FD_ARG_RE.match(arg_text)
    if m is None:
        return None
    anno = m.group(2)
    if anno is None:
        return FdInfo(int(m.group(1)), None, None, None)
    kind, proto, endpoint = classify_annotation(anno)
    return FdInfo(int(m.group(1)), kind, proto, endpoint)


_IOV_LEN_RE = re.compile(r"iov_len=(\d+)")
_MSG_LEN_RE = re.compile(r"msg_len=(\d+)")
MSG_IOVLEN_RE = re.compile(r"msg_iovlen=(\d+)")
BUF_COUNT_RE = re.compile(r'(?:"(?:[^"\\]|\\.)*"(?:\.\.\.)?|0x[0-9a-f]+|NULL), (\d+)', re.DOTALL)


def iov_sum(text: str) -> int | None:
    """Sum of iov_len in a printed iovec array, None when strace abbreviated it (`...]`)."""
    if "...]" in text and "...]" in _STRING_RE.sub('""', text):
        return None
    lens = _IOV_LEN_RE.findall(text)
    return sum(map(int, lens)) if lens else None


def int_or_none(text: str) -> int | None:
    try:
        return int(text, 0)
    except ValueError:
        return None


def write_request(name: str, args: str) -> tuple[int | None, int | None]:
    """(requested_bytes, iov_count) of a write-family call from its printed arguments.

    requested_bytes is None when strace did not print all of it (an iovec array cut by -s).
    """
    if name in ("write", "send", "sendto", "pwrite64"):
        m = BUF_COUNT_RE.search(args)
        return (int(m.group(1)) if m else None), None
    if name == "writev":
        return iov_sum(args), int_or_none(args[args.rfind(", ") + 2 :])
    if name in ("pwritev", "pwritev2"):
        parts = split_args(args)
        count = int_or_none(parts[2]) if len(parts) > 2 else None
        return (iov_sum(parts[1]) if len(parts) > 1 else None), count
    if name == "sendmsg":
        m = MSG_IOVLEN_RE.search(args)
        return iov_sum(args), (int(m.group(1)) if m else None)
    if name == "sendmmsg":
        counts = MSG_IOVLEN_RE.findall(args)
        return iov_sum(args), (sum(map(int, counts)) if counts else None)
    if name in ("sendfile", "sendfile64"):
        parts = split_args(args)
        return (int_or_none(parts[3]) if len(parts) > 3 else None), None
    if name == "splice":
        parts = split_args(args)
        return (int_or_none(parts[4]) if len(parts) > 4 else None), None
    return None, None


def sendmmsg_bytes(args: str) -> int | None:
    """Bytes sent by a sendmmsg: the msg_len strace printed for each message on exit."""
    lens = _MSG_LEN_RE.findall(args)
    return sum(map(int, lens)) if lens else None


def target_fd_text(name: str, args: str) -> str:
    """The text of the fd argument a call writes to (splice writes to its third argument)."""
    if name == "splice":
        parts = split_args(args)
        return parts[2] if len(parts) > 2 else ""
    return args
