"""The netns lab for real (as root): veth, MTU, tbf, netem error, cleanup in every ending."""

from __future__ import annotations

import asyncio
import gzip
import os
import platform
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pyroute2 import IPRoute, netns

from toolkit.errors import UsageError
from toolkit.lab.netlab import (
    MissingQdiscError,
    NetLab,
    cleanup_leftovers,
    parse_rate_bits_per_s,
    pids_in_netns,
)
from toolkit.probes.tcpinfo import read_own_socket, read_tcp_connections

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[2]


def assert_gone(*labs: NetLab) -> None:
    """Nothing of these labs remains: namespaces, host links, processes."""
    names = set(netns.listnetns())
    for lab in labs:
        assert lab.server_ns not in names and lab.client_ns not in names
        for proc in lab._procs:
            assert proc.returncode is not None, f"child {proc.pid} still running"
    with IPRoute() as ipr:
        host_links = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    assert not [name for name in host_links if name.startswith("ws-")]


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


ECHO_SERVER = """
    import socket, sys
    ls = socket.socket()
    ls.bind((sys.argv[1], 0))
    ls.listen()
    print(ls.getsockname()[1], flush=True)
    conn, peer = ls.accept()
    print(peer[0], flush=True)
    left = 1 << 20
    while left:
        data = conn.recv(min(left, 65536))
        conn.sendall(data)
        left -= len(data)
    sys.stdin.read()  # keep the connection open (readable by sock_diag) until told
"""

ECHO_CLIENT = """
    import socket, sys, threading
    payload = bytes(range(256)) * 4096  # 1 MiB
    conn = socket.create_connection((sys.argv[1], int(sys.argv[2])))
    threading.Thread(target=conn.sendall, args=(payload,)).start()
    echoed = bytearray()
    while len(echoed) < len(payload):
        echoed += conn.recv(65536)
    print(conn.getsockname()[0], echoed == payload, flush=True)
    sys.stdin.read()  # keep the connection open until told
"""


def test_echo_through_the_veth_between_namespaces_with_mtu_applied() -> None:
    mtu = 1280
    with NetLab(mtu=mtu) as lab:
        assert lab.link_info("server").mtu_bytes == mtu
        assert lab.link_info("client").mtu_bytes == mtu
        server = lab.popen(
            "server", [*python(ECHO_SERVER), lab.server_addr],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert server.stdout is not None and server.stdin is not None
        port = int(server.stdout.readline())
        client = lab.popen(
            "client", [*python(ECHO_CLIENT), lab.server_addr, str(port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert client.stdout is not None and client.stdin is not None
        assert client.stdout.readline().split() == [lab.client_addr, "True"]
        assert server.stdout.readline().strip() == lab.client_addr

        # The server's connection exists in the server namespace only, and its MSS
        # follows the veth MTU (IPv4 + TCP headers are 40 bytes, options take more).
        rows = read_tcp_connections(local_port=port, netns=lab.server_ns)
        assert [r.remote_addr for r in rows] == [lab.client_addr]
        assert rows[0].snd_mss <= mtu - 40
        assert rows[0].bytes_received == rows[0].bytes_sent - rows[0].bytes_retrans == 1 << 20
        assert rows[0].data_segs_out >= (1 << 20) // (mtu - 40)
        assert read_tcp_connections(local_port=port) == []
        for proc in (server, client):
            assert proc.stdin is not None
            proc.stdin.close()
            assert proc.wait(timeout=10) == 0
    assert_gone(lab)


def test_read_own_socket_finds_a_socket_of_another_namespace() -> None:
    with NetLab() as lab:
        # Sockets made inside the namespaces, used from this (host namespace) thread.
        listener = lab.call("server", socket.create_server, (lab.server_addr, 0))
        port = listener.getsockname()[1]
        client = lab.call("client", socket.create_connection, (lab.server_addr, port))
        server, _ = listener.accept()
        with listener, client, server:
            server.sendall(b"z" * 3000)
            counters = read_own_socket(server)
            assert (counters.local_addr, counters.remote_addr) == (
                lab.server_addr, lab.client_addr
            )
            assert counters.bytes_sent == 3000
            assert read_tcp_connections(local_port=port) == []  # not the host's
    assert_gone(lab)


def test_call_runs_in_the_namespace_and_leaves_the_caller_where_it_was() -> None:
    ours = os.readlink("/proc/thread-self/ns/net")
    with NetLab() as lab:
        theirs = lab.call("server", os.readlink, "/proc/thread-self/ns/net")
        client = lab.call("client", os.readlink, "/proc/thread-self/ns/net")
        assert len({ours, theirs, client}) == 3
        with pytest.raises(ZeroDivisionError):
            lab.call("server", lambda: 1 / 0)
    assert os.readlink("/proc/thread-self/ns/net") == ours


def test_lab_works_from_asyncio_code() -> None:
    async def main() -> NetLab:
        with NetLab(mtu=1400) as lab:
            assert lab.link_info("client").mtu_bytes == 1400
            probe = lab.popen("client", python("print('ok')"), stdout=subprocess.PIPE)
            out, _ = await asyncio.to_thread(probe.communicate, timeout=30)
            assert out == b"ok\n"
        return lab

    assert_gone(asyncio.run(main()))


def test_rate_adds_tbf_on_both_ends_and_shapes_a_transfer() -> None:
    rate_bits = 8_000_000
    with NetLab(rate="8mbit") as lab:
        for side in ("server", "client"):
            info = lab.link_info(side)
            assert info.qdiscs == ("tbf",)
            assert info.tbf_rate_bytes_per_s == rate_bits // 8
        sink = lab.popen(
            "server",
            [*python("""
                import socket, sys, time
                ls = socket.create_server((sys.argv[1], 0))
                print(ls.getsockname()[1], flush=True)
                conn, _ = ls.accept()
                start = time.monotonic()
                got = sum(iter(lambda: len(conn.recv(65536)), 0))
                print(got, time.monotonic() - start, flush=True)
            """), lab.server_addr],
            stdout=subprocess.PIPE, text=True,
        )
        assert sink.stdout is not None
        port = int(sink.stdout.readline())
        size = 1_000_000
        sender = lab.popen(
            "client",
            [*python(f"""
                import socket, sys
                with socket.create_connection((sys.argv[1], {port})) as c:
                    c.sendall(bytes({size}))
            """), lab.server_addr],
        )
        assert sender.wait(timeout=60) == 0
        got, elapsed_s = sink.communicate(timeout=60)[0].split()
        assert int(got) == size
        # tbf can only slow a transfer down: well above line rate would mean no shaping.
        assert float(elapsed_s) >= 0.6 * size * 8 / rate_bits
    assert_gone(lab)


def test_without_rate_there_is_no_tbf() -> None:
    with NetLab() as lab:
        assert "tbf" not in lab.link_info("server").qdiscs
    assert_gone(lab)


def kernel_has_netem() -> bool:
    """Independent of the code under test: the kernel's config or its module files."""
    if Path("/sys/module/sch_netem").exists():
        return True
    config = Path("/proc/config.gz")
    if config.exists():
        text = gzip.decompress(config.read_bytes()).decode()
        if "CONFIG_NET_SCH_NETEM=y" in text:
            return True
        if "CONFIG_NET_SCH_NETEM=m" not in text:
            return False
    modules = Path("/lib/modules") / platform.release()
    return any(modules.rglob("sch_netem.ko*")) if modules.exists() else False


def test_delay_uses_netem_or_names_the_missing_module() -> None:
    lab = NetLab(delay_ms=5, rate="100mbit")
    if kernel_has_netem():
        with lab:
            assert lab.link_info("server").qdiscs == ("netem", "tbf")
    else:
        with pytest.raises(MissingQdiscError) as caught, lab:
            pytest.fail("the lab came up without netem")
        message = str(caught.value)
        assert "netem" in message and "sch_netem" in message and "\n" not in message
    assert_gone(lab)


def test_exception_and_ctrl_c_inside_the_lab_still_clean_up() -> None:
    for error in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(error)) as caught, NetLab(rate="1gbit") as lab:
            lab.popen("server", ["sleep", "60"])
            raise error
        assert caught.value is error
        assert_gone(lab)


def test_crashed_child_and_stubborn_grandchild_are_cleaned_up() -> None:
    with NetLab() as lab:
        crashed = lab.popen("server", python("import os; os.abort()"))
        killed = lab.popen("client", ["sleep", "60"])
        killed.send_signal(signal.SIGKILL)
        # A grandchild that ignores SIGTERM, orphaned at once: only a namespace scan finds it.
        lab.popen(
            "server", ["sh", "-c", "(trap '' TERM; exec sleep 60 >/dev/null) &"]
        ).wait(timeout=10)
        assert crashed.wait(timeout=10) < 0
        assert killed.wait(timeout=10) == -signal.SIGKILL
        orphans = pids_in_netns(lab.server_ns)
        assert orphans  # the stubborn sleep lives on in the lab
    assert_gone(lab)
    assert_dead(orphans)


def assert_dead(pids: list[int]) -> None:
    deadline = time.monotonic() + 5
    while alive := [pid for pid in pids if Path(f"/proc/{pid}").exists()]:
        assert time.monotonic() < deadline, f"processes {alive} survived the lab"
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_signalled_process_running_a_lab_cleans_up(signum: int) -> None:
    owner = subprocess.Popen(
        python("""
            import time
            from toolkit.lab.netlab import NetLab
            with NetLab(rate="1gbit") as lab:
                lab.popen("client", ["sleep", "300"])
                print(lab.server_ns, lab.client_ns, flush=True)
                time.sleep(300)
        """),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    assert owner.stdout is not None
    names = owner.stdout.readline().split()
    assert len(names) == 2, owner.communicate()[1]
    orphans = pids_in_netns(names[1])
    assert len(names) == 2 and set(names) <= set(netns.listnetns()) and orphans
    owner.send_signal(signum)
    owner.communicate(timeout=30)
    assert owner.returncode != 0
    assert not set(names) & set(netns.listnetns())
    assert_dead(orphans)


def test_a_fork_of_the_owner_never_tears_the_lab_down() -> None:
    # pyroute2 forks helper children; SIGTERM or an exception there unwinds a copy of our
    # stack, through the lab's __exit__. Only the owner may remove anything.
    with NetLab() as lab:
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
        for how in ("sigterm", "exit"):
            pid = os.fork()
            if pid == 0:
                try:
                    if how == "sigterm":
                        os.kill(os.getpid(), signal.SIGTERM)
                        time.sleep(5)
                    else:
                        lab.__exit__(None, None, None)
                finally:
                    os._exit(7)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == (143 if how == "sigterm" else 7)
            assert {lab.server_ns, lab.client_ns} <= set(netns.listnetns())
            assert lab.link_info("client").mtu_bytes == 1500
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert_gone(lab)


def test_two_labs_at_once_do_not_collide() -> None:
    with NetLab() as first, NetLab() as second:
        assert {first.server_ns, first.client_ns}.isdisjoint(
            {second.server_ns, second.client_ns}
        )
        removed = cleanup_leftovers()  # live owners: none of ours is a leftover
        assert not {first.server_ns, second.server_ns} & set(removed)
        assert {first.server_ns, second.server_ns} <= set(netns.listnetns())
    assert_gone(first, second)


def test_leftover_of_a_killed_run_is_removed_by_the_next_run() -> None:
    owner = subprocess.Popen(
        python("""
            import subprocess, sys, time
            from toolkit.lab.netlab import NetLab
            lab = NetLab(rate="100mbit").__enter__()
            lab.popen("server", ["sleep", "300"])
            print(lab.server_ns, lab.client_ns, flush=True)
            time.sleep(300)
        """),
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    assert owner.stdout is not None
    names = owner.stdout.readline().split()
    assert len(names) == 2 and all(n.startswith(f"ws-{owner.pid}-") for n in names)
    owner.kill()
    owner.wait(timeout=10)
    assert set(names) <= set(netns.listnetns())  # the killed run left them behind
    orphans = pids_in_netns(names[0])
    assert orphans  # and its sleep still runs in there

    with NetLab() as lab:  # the next run
        assert set(names) <= set(lab.removed_leftovers)
    assert not set(names) & set(netns.listnetns())
    assert_dead(orphans)
    assert cleanup_leftovers() == []
    assert_gone(lab)


def test_without_root_it_stops_with_one_line() -> None:
    # Drop to nobody after every import, so the interpreter can still load what it needs.
    result = subprocess.run(
        python("""
            import os
            from toolkit.lab.netlab import NetLab
            from toolkit.errors import PermissionProblem
            os.setegid(65534)
            os.seteuid(65534)
            try:
                NetLab().__enter__()
            except PermissionProblem as exc:
                print(exc)
        """),
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert len(lines) == 1 and "root" in lines[0]


@pytest.mark.parametrize(
    ("rate", "bits"),
    [("1gbit", 10**9), ("100mbit", 10**8), ("500kbit", 5 * 10**5), ("12.5mbps", 10**8),
     ("64000", 64000), ("1Gbit", 10**9)],
)
def test_rates_read_like_tc(rate: str, bits: int) -> None:
    assert parse_rate_bits_per_s(rate) == bits


@pytest.mark.parametrize("rate", ["fast", "10 furlongs", "", "100gbit", "-1mbit"])
def test_bad_rates_and_mtus_are_usage_errors(rate: str) -> None:
    with pytest.raises(UsageError):
        NetLab(rate=rate)
    with pytest.raises(UsageError):
        NetLab(mtu=40)
