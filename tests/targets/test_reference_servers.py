"""Each reference server, h2c and TLS, for real: bodies intact through curl, h2load and the
built-in client; the write-family calls counted by attaching strace equal strace's own -c
tally of the same run and a count by hand of the log's TCP write lines."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import psutil
import pytest

from toolkit.clients.builtin import LoadConfig, run_load
from toolkit.clients.h2load import run_h2load
from toolkit.probes.strace_attach import StraceWindow
from toolkit.probes.tcp_segments import wait_server_closed
from toolkit.probes.window import WRITE_SYSCALLS
from toolkit.protocol.body import BodyStore
from toolkit.targets import ReferenceServer, TargetStartError

BODY = 200_000  # several frames, records and output buffers; not a power of two
REQUESTS = 60
# The first line of every write-family call on a TCP socket, complete or <unfinished ...>.
_TCP_CALL = re.compile(r"^\d+ +(" + "|".join(WRITE_SYSCALLS) + r")\(\d+<TCPv?6?:", re.M)


def _curl(url: str, out: Path, tls: bool) -> str:
    proto = ["--http2", "-k"] if tls else ["--http2-prior-knowledge"]
    proc = subprocess.run(["curl", "-sSf", *proto, "-o", str(out), "-w", "%{http_version}",
                           url], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("transport", ["h2c", "h2"])
@pytest.mark.parametrize("name", ["nginx", "h2o", "nghttpd"])
def test_reference_server_bodies_and_write_counts(tmp_path: Path, name: str,
                                                  transport: str) -> None:
    tls = transport == "h2"
    with ReferenceServer(name, transport=transport, body_bytes=BODY) as srv:
        assert srv.target is not None
        pids = list(srv.target.pids())
        assert srv.target.listening_ports() == {srv.target.port}
        # curl: one request, the body byte for byte
        assert _curl(srv.url, tmp_path / "body", tls) == "2"
        assert (tmp_path / "body").read_bytes() == bytes(BodyStore(BODY).view(BODY))
        _curl(srv.url + f"bytes/{BODY}", tmp_path / "bytes", tls)
        assert (tmp_path / "bytes").stat().st_size == BODY
        # h2load: every request answered in full
        h2 = run_h2load(srv.url, requests=REQUESTS, connections=2, streams=4, timeout_s=60)
        assert (h2.requests, h2.failures, h2.body_bytes) == (REQUESTS, 0, REQUESTS * BODY)
        # the built-in client checks every byte; strace attached to the whole tree
        with StraceWindow(srv.target.pids(), log_dir=str(tmp_path)) as window:
            load = run_load(LoadConfig(url=srv.url, requests=REQUESTS, connections=2,
                                       streams=4, insecure=True))
            # The server's writes on closing (GOAWAY, close_notify) land inside the window,
            # none is cut in half by the detach.
            assert wait_server_closed(srv.target.port)
        assert (load.requests, load.failures) == (REQUESTS, 0)
        counts = window.counts
        assert counts is not None and counts.unparsed_lines == 0 and not counts.notes
        log = Path(window.log_path).read_text()
    by_hand = len(_TCP_CALL.findall(log))
    assert counts.total_calls == by_hand > 0
    every_fd = dict(counts.calls)
    for syscall, n in (counts.other_fd_by_syscall or {}).items():
        every_fd[syscall] = every_fd.get(syscall, 0) + n
    assert counts.strace_c_calls == every_fd  # strace's own -c tally of the same run
    assert counts.bytes is not None and counts.bytes >= REQUESTS * BODY
    assert counts.errors == 0 or counts.errors < counts.total_calls
    assert not [p for p in pids if psutil.pid_exists(p)
                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def test_a_user_config_with_placeholders(tmp_path: Path) -> None:
    conf = tmp_path / "mine.conf"
    conf.write_text(
        "daemon off; worker_processes 1; pid {{tmp}}/n.pid; error_log stderr;\n"
        "events {}\nhttp { access_log off; sendfile off; http2_chunk_size 16k;\n"
        "  client_body_temp_path {{tmp}}/client_body;\n"
        "  server { listen {{host}}:{{port}} http2; root {{root}}; } }\n")
    with ReferenceServer("nginx", body_bytes=BODY, config_path=str(conf)) as srv:
        assert srv.config_text is not None and "http2_chunk_size 16k;" in srv.config_text
        _curl(srv.url, tmp_path / "body", tls=False)
    assert (tmp_path / "body").read_bytes() == bytes(BodyStore(BODY).view(BODY))
    # The same config on IPv6 lacks the brackets nginx wants: its own words, one line.
    with pytest.raises(TargetStartError) as err:
        ReferenceServer("nginx", config_path=str(conf), host="::1").start()
    line = str(err.value)
    assert "\n" not in line and "exited with status 1" in line
    assert 'invalid port in "::1:' in line
