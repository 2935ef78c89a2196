"""`writeshape syscalls` end to end on a log made by real strace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    assert write["calls"] >= 55 and write["errors"] == 5
    assert write["bytes"] >= 150 and write["bytes"] % 1 == 0
    file_only = json.loads(_cli(str(log), "--json", "--fd-kind", "file").stdout)
    assert file_only["syscalls"]["write"]["calls"] >= 50
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


ONE_BYTE_WRITES = "import os\nfd = os.open('/dev/null', os.O_WRONLY)\n" \
                  "for n in (0, 1, 1, 2, 3, 4, 5):\n    os.write(fd, b'x' * n)\n"


def _log_of(tmp_path: Path, script: str, *flags: str, name: str = "t.log") -> Path:
    src = tmp_path / f"{name}.py"
    src.write_text(script)
    log = tmp_path / name
    subprocess.run(["strace", *flags, "-o", str(log), sys.executable, str(src)], check=True,
                   timeout=60)
    return log


def test_one_byte_writes_land_in_the_one_byte_bucket(tmp_path: Path) -> None:
    log = _log_of(tmp_path, ONE_BYTE_WRITES, "-e", "trace=write")
    write = json.loads(_cli(str(log), "--json").stdout)["syscalls"]["write"]
    # key 2**k counts sizes in (2**(k-1), 2**k]; key 0 counts empty writes
    assert write["size_histogram"] == {"0": 1, "1": 2, "2": 1, "4": 2, "8": 1}
    assert write["bytes"] == 0 + 1 + 1 + 2 + 3 + 4 + 5
