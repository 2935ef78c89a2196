"""A fuzzed command line: every command, drawn arguments and files, never a traceback.

For every command of the CLI (read from the app itself, so a new command or option is
fuzzed without this file changing), hypothesis draws argument lists: the command's own
flags with valid and invalid values (sizes, numbers out of range, nan, words), paths that
are directories, absent, FIFOs, devices, and files that are truncated, binary, empty,
huge-lined strace logs or results JSON. Each list runs as a real process and must end
with exit 0, 1 or 2; on 2 exactly one line on stderr naming the problem; never a
traceback. A command still running when its time is up (a valid `serve`, a comparison
that started) is stopped and must have printed no traceback either.

The budget is fixed (examples per command below). The session's hypothesis seed is
printed at the top of the run and under any failure (tests/conftest.py): `pytest
--hypothesis-seed=N` replays it; the assertion shows the arguments, exit code and stderr.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toolkit.cli

COMMAND_TIMEOUT_S = 12.0
EXAMPLES = {"serve": 25, "load": 20, "compare": 25, "syscalls": 25, "report": 25}
DEFAULT_EXAMPLES = 20


def _commands() -> dict[str, list[str]]:
    """Each command's flags, as the app declares them."""
    app = typer.main.get_command(toolkit.cli.app)
    out = {}
    for name, command in app.commands.items():  # type: ignore[attr-defined]
        flags = [opt for p in command.params for opt in p.opts if opt.startswith("--")]
        out[name] = flags
    return out


COMMANDS = _commands()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Input files of every kind a user may point a command at."""
    d = tmp_path_factory.mktemp("fuzz")
    made = {"dir": d / "adir", "missing": d / "missing" / "x.json", "fifo": d / "fifo"}
    made["dir"].mkdir()
    os.mkfifo(made["fifo"])
    contents: dict[str, str | bytes] = {
        "empty": "", "binary": bytes(range(256)) * 8,
        "strace": '123 write(1</dev/pts/0>, "hi", 2) = 2\n' * 50,
        "strace_cut": '123 write(1</dev/pts/0>, "hi", 2) = 2\n123 sendmsg(3<TCP:[1',
        "huge_line": "123 write(1, \"" + "x" * 300_000 + "\", 300000) = 300000\n",
        "json_cut": '{"meta": {}, "results": [{"strategy": "single", "trans',
        "json_wrong": json.dumps({"meta": [], "results": {}}),
        "json_rows": json.dumps({"meta": {"noise_threshold": "x"}, "results": [
            {"strategy": 1, "transport": "h2c", "body_bytes": "big"}]}),
        "json_nested": json.dumps({"meta": {}, "results": [
            {"strategy": "single", "transport": "h2c", "body_bytes": 1, "ratios":
             {"req_per_s": []}, "rounds": [1, 2]}]}),
    }
    for name, content in contents.items():
        path = d / f"{name}.in"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        made[name] = path
    return {k: str(v) for k, v in made.items()}


VALUES = st.sampled_from([
    "0", "1", "2", "-1", "65536", "1MiB", "16KiB", "1EiB", "99999999999999999999", "nan",
    "inf", "-inf", "1e309", "0.5", "", " ", "auto", "single", "split,split", "h2c,h2",
    "coalesce", "bogus", "--", "-", "http://127.0.0.1:9/", "https://[::1", "ftp://x/",
    "é", "\x01", "%s%n", "a" * 300,  # (argv cannot hold a NUL byte)
])


def _arglists(command: str, files: dict[str, str]) -> st.SearchStrategy[list[str]]:
    flags = COMMANDS[command]
    paths = st.sampled_from(sorted(files.values()))
    value = st.one_of(VALUES, paths)
    option = st.tuples(st.sampled_from([*flags, "--no-such-flag"]),
                       st.one_of(st.none(), value)).map(
                           lambda fv: [fv[0]] if fv[1] is None else [fv[0], fv[1]])
    positional = st.lists(st.one_of(paths, VALUES), max_size=2)
    return st.tuples(positional, st.lists(option, max_size=4)).map(
        lambda pa: pa[0] + [a for opt in pa[1] for a in opt])


def _run(command: str, args: list[str], tmp: Path) -> tuple[int | None, str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "toolkit", command, *args], cwd=tmp,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace", start_new_session=True, env=env)
    try:
        out, err = proc.communicate(timeout=COMMAND_TIMEOUT_S)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        # Still running: it accepted its arguments (a server serving, a comparison that
        # started). Stop it and everything it started.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        return None, out, err


def _check(command: str, args: list[str], tmp: Path) -> None:
    code, out, err = _run(command, args, tmp)
    where = f"writeshape {command} {args!r}: exit {code}, stderr {err[-800:]!r}"
    assert "Traceback" not in err + out, where
    if code is None:
        return
    assert code in (0, 1, 2), where
    if code == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("writeshape: error: "), where


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_any_arguments_end_cleanly(command: str, files: dict[str, str],
                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp(f"run-{command}")

    @settings(max_examples=EXAMPLES.get(command, DEFAULT_EXAMPLES), deadline=None,
              print_blob=True, suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.data_too_large])
    @given(args=_arglists(command, files))
    def run(args: list[str]) -> None:
        _check(command, args, tmp)

    run()
