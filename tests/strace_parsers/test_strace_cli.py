"""`writeshape syscalls` end to end on a log made by real strace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

WRITEHEAVY = "import os\nfd = os.open('/dev/null', os.O_WRONLY)\n" \
             "for i in range(50):\n    os.write(fd, b'abc')\n" \
             "for i in range(5):\n    try:\n        os.write(999, b'z')\n" \
             "    except OSError:\n        pass\n"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("writeshape")
    return subprocess.run([str(exe), "syscalls", *args], capture_output=True, text=True,
                          timeout=60)


def _trace(tmp_path: Path) -> Path:
    script = tmp_path / "w.py"
    script.write_text(WRITEHEAVY)
    log = tmp_path / "w.log"
    subprocess.run(["strace", "-f", "-yy", "-e", "trace=write", "-o", str(log),
                    sys.executable, str(script)], check=True, timeout=60)
    return log


def test_json_matches_contract(tmp_path: Path) -> None:
    log = _trace(tmp_path)
    with log.open("a") as fh:
        fh.write("this is not strace\n")
    out = _cli(str(log), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) >= {"files", "lines", "unparsed", "unparsed_examples", "syscalls"}
    assert doc["unparsed"] == 1
    assert doc["unparsed_examples"][0]["text"] == "this is not strace"
    write = doc["syscalls"]["write"]
    # Exact: 50 writes of 3 bytes to /dev/null, 5 to a closed fd (EBADF).
    assert (write["calls"], write["errors"], write["bytes"]) == (55, 5, 150)
    file_only = json.loads(_cli(str(log), "--json", "--fd-kind", "file").stdout)
    assert file_only["syscalls"]["write"]["calls"] == 50
    assert file_only["syscalls"]["write"]["errors"] == 0  # fd 999 has no annotation


def test_table_and_errors(tmp_path: Path) -> None:
    log = _trace(tmp_path)
    out = _cli(str(log))
    assert out.returncode == 0 and "write" in out.stdout and "unparsed" in out.stdout
    missing = _cli(str(tmp_path / "nope.log"))
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "no such file" in missing.stderr
    bad = tmp_path / "bad.log"
    bad.write_text("garbage\n")
    strict = _cli(str(bad), "--strict")
    assert strict.returncode != 0 and "bad.log:1" in strict.stderr
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    assert "PREFIX.PID" in _cli(str(empty_dir)).stderr


# -- no traceback and no silent wrong answer (issue 18) ------------------------------------

ONE_BYTE_WRITES = "import os\nfd = os.open('/dev/null', os.O_WRONLY)\n" \
                  "for n in (0, 1, 1, 2, 3, 4, 5):\n    os.write(fd, b'x' * n)\n"


def _log_of(tmp_path: Path, script: str, *flags: str, name: str = "t.log") -> Path:
    src = tmp_path / f"{name}.py"
    src.write_text(script)
    log = tmp_path / name
    subprocess.run(["strace", *flags, "-o", str(log), sys.executable, str(src)], check=True,
                   timeout=60)
    return log


def _one_line(out: subprocess.CompletedProcess[str], *words: str) -> str:
    """The single stderr line of a run, which must name the problem; never a traceback."""
    assert "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _strict_fails(path: Path, *args: str, words: tuple[str, ...]) -> None:
    out = _cli(str(path), *args, "--strict")
    assert out.returncode == 2 and out.stdout == ""
    _one_line(out, "writeshape: error:", *words)


def test_an_empty_log_is_a_warning_and_fails_strict(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_text("")
    out = _cli(str(empty), "--json")
    assert out.returncode == 0
    assert _one_line(out, "writeshape: warning:", "empty.log", "empty")
    assert json.loads(out.stdout)["meta"]["warnings"] == [
        f"{empty}: empty: no strace output to count"]
    _strict_fails(empty, words=("empty",))


def test_a_log_of_garbage_is_a_warning_and_fails_strict(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.log"
    garbage.write_text("GET / HTTP/1.1\nHost: example\n\nnot strace either\n")
    out = _cli(str(garbage))
    assert out.returncode == 0 and "unparsed" in out.stdout
    _one_line(out, "writeshape: warning:", "no strace output", "4 line(s)", "GET / HTTP")
    _strict_fails(garbage, words=("garbage.log:1", "not a strace line"))


def test_a_cut_off_last_line_is_a_warning_and_fails_strict(tmp_path: Path) -> None:
    log = _trace(tmp_path)
    data = log.read_bytes()
    cut = tmp_path / "cut.log"
    cut.write_bytes(data[: data.rindex(b"write(") + 12])  # strace killed mid-line
    last_line = cut.read_bytes().count(b"\n") + 1
    out = _cli(str(cut), "--json")
    assert out.returncode == 0
    _one_line(out, "writeshape: warning:", f"cut.log:{last_line}:", "cut short")
    doc = json.loads(out.stdout)
    assert doc["truncated"] == 1 and doc["syscalls"]["write"]["calls"] >= 50
    _strict_fails(cut, words=("cut.log:", "cut short"))


def test_a_pid_filter_that_matches_nothing_is_a_warning_and_fails_strict(
        tmp_path: Path) -> None:
    no_pids = _log_of(tmp_path, ONE_BYTE_WRITES, name="nopid.log")  # no -f: no pid column
    out = _cli(str(no_pids), "--pid", "1", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["syscalls"] == {}
    _one_line(out, "writeshape: warning:", "pid 1 matched no call", "carries a pid", "-f")
    _strict_fails(no_pids, "--pid", "1", words=("pid 1", "carries a pid"))
    with_pids = _trace(tmp_path)
    out = _cli(str(with_pids), "--pid", "1")
    _one_line(out, "writeshape: warning:", "pid 1 matched no call", "its pids:")
    _strict_fails(with_pids, "--pid", "1", words=("its pids:",))


@pytest.mark.parametrize(("args", "words"), [
    (("--fd-kind", "sockets"), ("fd kind 'sockets'", "socket, pipe, file")),
    (("--pid", "x"), ("--pid",)),
])
def test_bad_arguments_are_one_line(tmp_path: Path, args: tuple[str, ...],
                                    words: tuple[str, ...]) -> None:
    out = _cli(str(_trace(tmp_path)), *args)
    assert out.returncode == 2
    _one_line(out, "writeshape: error:", *words)


def test_bad_paths_are_one_line(tmp_path: Path) -> None:
    for path, words in ((tmp_path / "nope.log", ("no such file",)),
                        (Path("/proc/self/mem"), ("cannot read",))):
        out = _cli(str(path))
        assert out.returncode == 2
        _one_line(out, "writeshape: error:", str(path), *words)


def test_stats_and_json_meta_say_how_fast_and_which_counter(tmp_path: Path) -> None:
    log = _trace(tmp_path)
    out = _cli(str(log), "--json", "--stats")
    assert out.returncode == 0
    line = _one_line(out, "lines in", "lines/s", "counter)")
    meta = json.loads(out.stdout)["meta"]
    assert meta["implementation"] in ("c", "python") and f"({meta['implementation']} " in line
    assert meta["seconds"] > 0 and meta["lines_per_s"] > 0 and meta["warnings"] == []
    quiet = _cli(str(log))
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_one_byte_writes_land_in_the_one_byte_bucket(tmp_path: Path) -> None:
    log = _log_of(tmp_path, ONE_BYTE_WRITES, "-e", "trace=write")
    write = json.loads(_cli(str(log), "--json").stdout)["syscalls"]["write"]
    # key 2**k counts sizes in (2**(k-1), 2**k]; key 0 counts empty writes
    assert write["size_histogram"] == {"0": 1, "1": 2, "2": 1, "4": 2, "8": 1}
    assert write["bytes"] == 0 + 1 + 1 + 2 + 3 + 4 + 5
