"""The strace line grammar and value parsers on lines real strace 6 prints."""

from __future__ import annotations

from strace_parsers import (
    ExitEvent,
    SignalEvent,
    StraceReader,
    SummaryRowEvent,
    SyscallEvent,
    parse_fd,
    split_args,
    unescape,
)
from strace_parsers.line import CallPart, parse_line
from strace_parsers.values import decode_string, write_request


def _events(lines: list[str]) -> list[object]:
    reader = StraceReader()
    out: list[object] = []
    for n, line in enumerate(lines, 1):
        out.extend(reader.feed(line, n))
    out.extend(reader.finish())
    return out


def test_tcp_annotation_with_pid_prefix_across_unfinished_and_resumed_lines() -> None:
    events = _events([
        "4176  sendto(5<TCP:[127.0.0.1:8443->127.0.0.1:51234]>, \"ab\", 2, 0, NULL,  "
        "<unfinished ...>",
        "4177  write(1<pipe:[77]>, \"x\", 1) = 1",
        "4176  <... sendto resumed>0) = 2",
    ])
    calls = [e for e in events if isinstance(e, SyscallEvent)]
    assert [c.name for c in calls] == ["write", "sendto"]
    send = calls[1]
    assert (send.pid, send.fd, send.fd_kind, send.fd_proto) == (4176, 5, "socket", "TCP")
    assert send.endpoint == "127.0.0.1:8443->127.0.0.1:51234"
    assert send.retval == 2 and send.resumed and send.requested_bytes == 2
    assert calls[0].fd_kind == "pipe"


def test_ipv6_unix_file_and_hex_encoded_annotations() -> None:
    v6 = parse_fd("5<TCPv6:[[::1]:34301->[::1]:50072]>, \"y\", 1")
    assert v6 is not None and (v6.kind, v6.proto, v6.endpoint) == (
        "socket", "TCPv6", "[::1]:34301->[::1]:50072")
    unix = parse_fd("3<UNIX-STREAM:[6373->6374]>")
    assert unix is not None and (unix.kind, unix.proto) == ("socket", "UNIX-STREAM")
    dev = parse_fd("1</dev/null<char 1:3>>, \"hi\\n\", 3")
    assert dev is not None and (dev.kind, dev.endpoint) == ("file", "/dev/null")
    hexed = parse_fd(r"5<\x70\x69\x70\x65\x3a\x5b\x37\x37\x30\x32\x5d>, x")
    assert hexed is not None and hexed.kind == "pipe"
    plain = parse_fd("7<socket:[8301]>")
    assert plain is not None and (plain.kind, plain.proto) == ("socket", None)


def test_result_found_outside_strings_even_when_data_contains_it() -> None:
    part = parse_line('123 write(3, "a) = 5 \\"(x)\\"", 12) = 12 <0.000010>')
    assert isinstance(part, CallPart)
    assert (part.retval, part.duration_s, part.args) == (12, 1e-05, '3, "a) = 5 \\"(x)\\"", 12')


def test_errors_restarts_hex_returns_and_deaths() -> None:
    enoent = parse_line('openat(AT_FDCWD, "/x", O_RDONLY) = -1 ENOENT (No such file or directory)')
    assert isinstance(enoent, CallPart) and enoent.errno == "ENOENT" and enoent.returned
    restart = parse_line("[pid  7] futex(0x1, FUTEX_WAIT, 0, NULL) = ? ERESTARTSYS (To be "
                         "restarted if SA_RESTART is set)")
    assert isinstance(restart, CallPart) and restart.pid == 7 and restart.errno == "ERESTARTSYS"
    brk = parse_line("brk(NULL)                               = 0x55fdc80e2000")
    assert isinstance(brk, CallPart) and brk.retval == 0x55FDC80E2000
    died = parse_line("4136  <... exit_group resumed>) = ?")
    assert isinstance(died, CallPart) and not died.returned


def test_prefixes_and_timestamps_of_every_flag() -> None:
    for line, pid, t in [
        ("5003  11:19:30.596800 write(1, \"hi\\n\", 3) = 3", 5003, 11 * 3600 + 19 * 60 + 30.5968),
        ("5003  11:19:30 write(1, \"hi\\n\", 3) = 3", 5003, 11 * 3600 + 19 * 60 + 30),
        ("1795691819.317878 write(1, \"hi\\n\", 3) = 3", None, 1795691819.317878),
        ("5010       0.000090 write(1, \"hi\\n\", 3) = 3", 5010, 0.00009),
        ("5017  11:19:30.624407 (+     0.000091) write(1, \"hi\\n\", 3) = 3", 5017, 40770.624407),
        ("5041<sh> write(1, \"hi\\n\", 3) = 3", 5041, None),
        ("5027  [   1] write(1, \"hi\\n\", 3) = 3", 5027, None),
        ("5034  [00007fba933c4350] write(1, \"hi\\n\", 3) = 3", 5034, None),
        ("[pid  6814] write(1, \"hi\\n\", 3) = 3", 6814, None),
    ]:
        part = parse_line(line)
        assert isinstance(part, CallPart), line
        assert part.pid == pid and part.name == "write" and part.retval == 3, line
        if t is None:
            assert part.time_s is None
        else:
            assert part.time_s is not None and abs(part.time_s - t) < 1e-6, line


def test_signals_exits_and_notes() -> None:
    sig = parse_line("4135  --- SIGUSR1 {si_signo=SIGUSR1, si_code=SI_USER, si_pid=4135} ---")
    assert isinstance(sig, SignalEvent) and sig.signal == "SIGUSR1" and sig.pid == 4135
    stop = parse_line("--- stopped by SIGSTOP ---")
    assert isinstance(stop, SignalEvent) and stop.stopped
    ex = parse_line("4136  +++ exited with 3 +++")
    assert isinstance(ex, ExitEvent) and ex.status == 3
    kill = parse_line("+++ killed by SIGSEGV (core dumped) +++")
    assert isinstance(kill, ExitEvent) and kill.signal == "SIGSEGV" and kill.core_dumped


def test_strace_message_injected_into_a_trace_line_is_mended() -> None:
    events = _events([
        "clone3({flags=CLONE_VM, exit_signal=0}strace: Process 6814 attached",
        " => {parent_tid=[6814]}, 88) = 6814",
        "[pid  6814] <... clone3 resumed>) = 0",
    ])
    calls = [e for e in events if isinstance(e, SyscallEvent)]
    assert calls[0].name == "clone3" and calls[0].retval == 6814
    assert calls[1].orphan  # the child's half has no start: reported, not fatal


def test_resumed_start_printed_before_pid_prefixes_appeared() -> None:
    events = _events([
        "clone3({flags=CLONE_VM} <unfinished ...>",
        "[pid  6813] <... clone3 resumed> => {parent_tid=[6814]}, 88) = 6814",
    ])
    calls = [e for e in events if isinstance(e, SyscallEvent)]
    assert len(calls) == 1 and calls[0].retval == 6814 and not calls[0].orphan


def test_summary_table_rows_with_blank_error_cells() -> None:
    events = _events([
        "% time     seconds  usecs/call     calls    errors syscall",
        "------ ----------- ----------- --------- --------- ----------------",
        " 72.31    0.097481        1218        80        40 wait4",
        "  0.08    0.000103           1        89           getuid",
        "------ ----------- ----------- --------- --------- ----------------",
        "100.00    0.097584          12       169        40 total",
    ])
    rows = [e for e in events if isinstance(e, SummaryRowEvent)]
    assert [(r.name, r.calls, r.errors) for r in rows] == [
        ("wait4", 80, 40), ("getuid", 89, 0), ("total", 169, 40)]


def test_strings_args_and_iovecs() -> None:
    assert unescape(r"x\n\"\\\1\377\x41") == 'x\n"\\\x01\xffA'
    assert decode_string('"ab\\n"...') == (b"ab\n", True)
    assert split_args('5<TCP:[1.2.3.4:5->6.7.8.9:10]>, {a="x,y", b=[1, 2]}, f(1, 2)') == [
        "5<TCP:[1.2.3.4:5->6.7.8.9:10]>", '{a="x,y", b=[1, 2]}', "f(1, 2)"]
    msg = ('5, {msg_name=NULL, msg_namelen=0, msg_iov=[{iov_base="ab", iov_len=2}, '
           '{iov_base="cde", iov_len=3}], msg_iovlen=2, msg_controllen=0, msg_flags=0}, 0')
    assert write_request("sendmsg", msg) == (5, 2)
    cut = '3, [{iov_base="ab", iov_len=2}, ...], 40'
    assert write_request("writev", cut) == (None, 40)  # abbreviated by -s: not invented


def test_truncated_last_line_is_kept_apart_from_unparsed() -> None:
    reader = StraceReader()
    assert reader.feed('123 write(3, "abc', 1, last=True)
    assert (reader.truncated, reader.unparsed) == (1, 0)


def test_a_result_with_leading_zeros_is_decimal_not_a_traceback() -> None:
    events = _events(["write(1, \"x\", 1) = 012\n", "mmap(NULL, 8192) = 0x7f12\n"])
    assert [e.retval for e in events if isinstance(e, SyscallEvent)] == [12, 0x7F12]


def test_strace_parsers_stands_alone() -> None:
    """It imports nothing from the toolkit that uses it, and its errors have one base."""
    import subprocess
    import sys

    code = ("import sys, strace_parsers\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'toolkit'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
    from strace_parsers import (
        StraceError,
        StraceInputError,
        StraceParseError,
        StraceUsageError,
    )

    for cls in (StraceInputError, StraceParseError, StraceUsageError):
        assert issubclass(cls, StraceError) and cls.__module__ == "strace_parsers.errors"
