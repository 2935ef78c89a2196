"""Start `writeshape serve` as a child process (optionally under strace or in a netns).

The runner, the pytest plugin and the tests all start servers through here, so a server
is always a real process with its own RSS, and always stopped with SIGTERM (its process
group is killed if it does not exit).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from toolkit.clients.fetch import H2Fetcher
from toolkit.errors import WriteshapeError
from toolkit.strategies import all_options

_LISTEN_RE = re.compile(r"listening on (https?)://(\S+):(\d+)")


class ServerStartError(WriteshapeError):
    pass


_PR_SET_PDEATHSIG = 1
_libc: Any = None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the process that started it dies, so a
    killed runner (even by SIGKILL) leaves no server behind (its own session keeps it
    out of the terminal's Ctrl-C, which the runner handles)."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _load_libc() -> Any:
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


_libc = _load_libc()


def _fetch_once(url: str, path: str) -> Any:
    with H2Fetcher(url) as f:
        return f.get(path)


@dataclass
class ServerOptions:
    strategy: str = "single"
    tls: bool = False
    body_bytes: int = 1 << 20
    threads: bool = False
    tls_mode: str = "membio"
    tls_version: str = "1.3"
    tls_probe: bool = True
    # Off unless asked (as serve's default): timing runs must not pay for it; the runner
    # switches it on for one load of its own (CellRunner.write_timing_run).
    write_timing: bool = False
    max_frame_bytes: int | None = None
    flush_bytes: int | None = None
    # The strategy's own options by keyword (toolkit.strategies declares their flags).
    strategy_options: Mapping[str, Any] = field(default_factory=dict)
    memory_sample_ms: int = 0
    host: str = "127.0.0.1"
    port: int = 0
    extra_args: Sequence[str] = field(default_factory=tuple)

    def argv(self) -> list[str]:
        args = [sys.executable, "-m", "toolkit", "serve", "--strategy", self.strategy,
                "--host", self.host, "--port", str(self.port),
                "--body-size", str(self.body_bytes)]
        if self.tls:
            args += ["--tls", "--tls-mode", self.tls_mode, "--tls-version", self.tls_version]
            if not self.tls_probe:
                args.append("--no-tls-probe")
        if self.threads:
            args.append("--threads")
        if self.write_timing:
            args.append("--write-timing")
        if self.max_frame_bytes:
            args += ["--max-frame-size", str(self.max_frame_bytes)]
        if self.flush_bytes:
            args += ["--flush-bytes", str(self.flush_bytes)]
        if self.memory_sample_ms:
            args += ["--memory-sample-ms", str(self.memory_sample_ms)]
        options = all_options()
        for name, value in self.strategy_options.items():
            args += options[name].argv(value)
        return args + list(self.extra_args)


class ServerProcess:
    """A running server; use as a context manager. ``wrapper`` prefixes the command
    (e.g. strace); ``popen`` replaces subprocess.Popen (e.g. to start in a netns)."""

    def __init__(self, options: ServerOptions, *, wrapper: Sequence[str] = (),
                 popen: Any = None, call: Any = None, start_timeout_s: float = 30.0) -> None:
        self.options = options
        self.wrapper = list(wrapper)
        self._popen = popen or subprocess.Popen
        # How to run client-side Python (control requests): in the client netns if any.
        self.call = call or (lambda fn, *a, **kw: fn(*a, **kw))
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.port = 0
        self.server_pid: int | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="writeshape-srv-")
        self.stats_path = os.path.join(self._tmp.name, "stats.json")
        self.stderr_path = os.path.join(self._tmp.name, "stderr.log")
        self.final_stats: dict[str, Any] | None = None
        self._control: H2Fetcher | None = None
        self.returncode: int | None = None

    def start(self) -> ServerProcess:
        try:
            return self._start()
        except BaseException:  # Ctrl-C while waiting for the line: no server left behind
            self.stop()
            raise

    def _start(self) -> ServerProcess:
        argv = [*self.wrapper, *self.options.argv(), "--stats-json", self.stats_path]
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 (closed in stop)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = self._popen(argv, stdout=subprocess.PIPE, stderr=self._stderr,
                                start_new_session=True, env=env,
                                preexec_fn=_die_with_parent)
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout_s
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                m = _LISTEN_RE.search(line.decode(errors="replace"))
                if m:
                    self.server_pid = self._find_server_pid()
                    self.port = int(m.group(3))
                    self.url = f"{m.group(1)}://{m.group(2)}:{self.port}"
                    return self
                if not line:
                    break
            elif self.proc.poll() is not None:
                break
        self.stop()
        raise ServerStartError(
            f"server did not start ({' '.join(self.options.argv()[3:])}): "
            f"{self.stderr_tail() or 'no output'}")

    def _find_server_pid(self) -> int:
        """The Python server itself: the wrapper's (strace's) child, or the process."""
        assert self.proc is not None
        if not self.wrapper:
            return self.proc.pid
        import psutil

        for child in psutil.Process(self.proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "toolkit" in child.cmdline():
                    return child.pid
        return self.proc.pid

    def stderr_tail(self, n: int = 3) -> str:
        try:
            with open(self.stderr_path, errors="replace") as fh:
                lines = [ln.strip() for ln in fh if ln.strip()]
        except OSError:
            return ""
        return " | ".join(lines[-n:])

    def wait_for_log(self, needle: str, timeout_s: float = 5.0) -> list[str]:
        """The server's log lines that contain ``needle``, once there is one (or [])."""
        deadline = time.monotonic() + timeout_s
        while True:
            lines = [ln for ln in self.log_lines() if needle in ln]
            if lines or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def log_lines(self) -> list[str]:
        with open(self.stderr_path, errors="replace") as fh:
            return [ln.rstrip("\n") for ln in fh]

    def get_json(self, path: str) -> Any:
        """GET a control endpoint over one long-lived connection: a fresh connection per
        request would add its handshake (TLS records, segments) to what is measured."""
        try:
            if self._control is None:
                self._control = self.call(H2Fetcher, self.url)
            resp = self._control.get(path)
        except WriteshapeError:
            self._close_control()
            try:
                resp = self.call(_fetch_once, self.url, path)  # one retry, on a new connection
            except WriteshapeError as exc:
                raise WriteshapeError(f"{exc} ({self._state()})") from None
        if resp.status != 200:
            raise WriteshapeError(f"GET {path} answered {resp.status}")
        return resp.json()

    def _state(self) -> str:
        """What became of the server, for an error message: exit status and last log lines."""
        code = self.proc.poll() if self.proc is not None else self.returncode
        state = "server running" if code is None else f"server exited with {code}"
        tail = self.stderr_tail()
        return f"{state}; log: {tail}" if tail else state

    def stats(self) -> dict[str, Any]:
        return self.get_json("/stats")

    def set_write_timing(self, on: bool) -> dict[str, Any]:
        """Switch the server's write timing (its /stats ``write_timing``) on or off."""
        return self.get_json(f"/stats?write_timing={'on' if on else 'off'}")

    def mem(self, query: str = "") -> dict[str, Any]:
        return self.get_json("/mem" + (f"?{query}" if query else ""))

    def memory_series(self) -> dict[str, Any]:
        """The server's memory samples (serve --memory-sample-ms)."""
        return self.get_json("/mem/series")

    def _close_control(self) -> None:
        if self._control is not None:
            with contextlib.suppress(OSError, WriteshapeError):
                self._control.close()
            self._control = None

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, wait; SIGKILL the process group if it hangs. Reads the final stats."""
        self._close_control()
        proc = self.proc
        if proc is None:
            return self.returncode
        if proc.poll() is None:
            # Signal the server, not the wrapper: strace must see the server's last writes
            # (GOAWAY, the final stats file) and exit when its tracee does.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.server_pid or proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.returncode = proc.returncode
        if proc.stdout:
            proc.stdout.close()
        self._stderr.close()
        try:
            with open(self.stats_path) as fh:
                self.final_stats = json.load(fh)
        except (OSError, ValueError):
            self.final_stats = None
        self.proc = None
        return self.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def cleanup(self) -> None:
        self._tmp.cleanup()
