"""The strategy registry is the single source: a strategy registered from outside is
served, offered by the CLI, and tested by every parametrised test without a test file
changing; options are checked by what each strategy declares."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.errors import UsageError
from toolkit.strategies import (
    PLUGIN_MODULES_ENV,
    check_options,
    check_strategy,
    strategy_names,
    supports,
)

ROOT = Path(__file__).resolve().parents[2]

# A throwaway strategy: each DATA frame's header and payload in one sendmsg of their own.
THROWAWAY = '''
from toolkit.strategies import (CipherFlush, Shape, SocketCall, SslWrite, Strategy,
                                is_payload, register)


@register
class Pairs(Strategy):
    name = "pairs"
    description = "one sendmsg per frame: its 9-byte header and its payload"
    shape = Shape(syscalls=frozenset({"sendmsg"}), calls_per_frame=1)

    def plan(self, segments):
        pending = []
        for seg in segments:
            pending.append(seg)
            if is_payload(seg):
                yield SocketCall("sendmsg", tuple(pending))
                pending = []
        if pending:
            yield SocketCall("sendmsg", tuple(pending))

    def plan_tls(self, segments):
        for seg in segments:
            yield SslWrite(seg)
            if is_payload(seg):
                yield CipherFlush("sendmsg")
        yield CipherFlush("sendmsg")
'''

# The tests that take every strategy from the registry: byte identity (pure and through
# the core), shapes under strace, memory per response, TLS records (counted, and against
# tshark), real clients.
PARAMETRISED = [
    "tests/server/test_strategies.py", "tests/server/test_server_core.py",
    "tests/server/test_server_strace.py", "tests/server/test_server_memory.py",
    "tests/server/test_server_tls.py", "tests/server/test_server_clients.py",
    "tests/server/test_server_bad_input.py",
]


def test_a_registered_strategy_is_picked_up_by_the_parametrised_suite(tmp_path: Path) -> None:
    (tmp_path / "throwaway_strategy.py").write_text(THROWAWAY)
    env = dict(os.environ, **{PLUGIN_MODULES_ENV: "throwaway_strategy"})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "-k", "pairs", *PARAMETRISED], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=900)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    passed = re.search(r"(\d+) passed", tail)
    assert proc.returncode == 0 and passed, proc.stdout[-3000:] + proc.stderr[-2000:]
    # Byte identity h2c and TLS, the core's flush h2c and TLS, strace, memory, the TLS
    # record shape, curl/h2load over TLS in two modes, tshark, clients, bad input...
    assert int(passed.group(1)) >= 17, tail
    assert "failed" not in tail and "error" not in tail, tail


def test_without_the_module_the_strategy_is_unknown() -> None:
    assert "pairs" not in strategy_names()
    with pytest.raises(UsageError, match="unknown strategy 'pairs'"):
        check_strategy("pairs")


def test_a_missing_plugin_module_is_one_line() -> None:
    env = dict(os.environ, **{PLUGIN_MODULES_ENV: "no_such_module_here"})
    proc = subprocess.run(["writeshape", "serve", "--port", "0", "--strategy", "single"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"writeshape: error: {PLUGIN_MODULES_ENV}: cannot import 'no_such_module_here': "
        "No module named 'no_such_module_here'"]


def test_transports_and_options_come_from_the_declarations() -> None:
    assert supports("coalesce", "h2") and not supports("coalesce", "h2c")
    assert "coalesce" in strategy_names("h2") and "coalesce" not in strategy_names("h2c")
    assert check_options("coalesce", {"records_per_send": 4}, tls=True) == []
    notes = check_options("split", {"dynamic_records": True, "records_per_send": 4}, tls=True)
    assert notes == ["--dynamic-records and --coalesce-records-per-send: coalesce only; "
                     "strategy split ignores it"]
    with pytest.raises(UsageError, match=r"must be 1\.\.1024"):
        check_options("coalesce", {"records_per_send": 0}, tls=True)
    with pytest.raises(UsageError, match="needs --tls"):
        check_options("coalesce", {"dynamic_records": True}, tls=False)
    with pytest.raises(UsageError, match="no strategy takes an option"):
        check_options("single", {"nonsense": 1}, tls=False)
