"""tcp_info through sock_diag on real loopback connections: what each write shape sends."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from toolkit.probes.tcpinfo import (
    TcpConnCounters,
    TcpInfoUnavailable,
    read_own_socket,
    read_own_socket_async,
    read_tcp_connections,
)

HEADER = b"H" * 9  # an HTTP/2 frame header's size
PAYLOAD = b"p" * 100


@contextmanager
def tcp_pair(
    family: socket.AddressFamily = socket.AF_INET,
) -> Iterator[tuple[socket.socket, socket.socket]]:
    """(server side, client side) of a fresh loopback connection; NODELAY on the server."""
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    with socket.socket(family) as listener:
        listener.bind((host, 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname()[:2])
        server, _ = listener.accept()
    server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with server, client:
        yield server, client


def drain(sock: socket.socket, total: int, ack_every: int | None) -> threading.Thread:
    """Read `total` bytes on another thread; answer one byte per `ack_every` bytes
    (a request/response rhythm) or never (a bulk stream)."""

    def run() -> None:
        got = 0
        while got < total:
            want = ack_every if ack_every else total - got
            chunk = b""
            while len(chunk) < want:
                data = sock.recv(want - len(chunk))
                assert data, "peer closed early"
                chunk += data
            got += len(chunk)
            if ack_every:
                sock.sendall(b"k")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def send_split(sock: socket.socket, last: bool) -> None:
    sock.send(HEADER)
    sock.send(PAYLOAD)


def send_cork(sock: socket.socket, last: bool) -> None:
    # MSG_MORE holds the header back until the payload joins it; the payload itself is
    # held too unless it is the last write of a flush.
    sock.send(HEADER, socket.MSG_MORE)
    sock.send(PAYLOAD, 0 if last else socket.MSG_MORE)


def measure(
    send: Callable[[socket.socket, bool], None], messages: int, request_response: bool
) -> dict[str, int]:
    """Send `messages` header+payload messages; return the server side's counter growth."""
    size = len(HEADER) + len(PAYLOAD)
    with tcp_pair() as (server, client):
        reader = drain(client, messages * size, size if request_response else None)
        before = read_own_socket(server)
        for i in range(messages):
            # A request/response peer waits for each answer: every response is a flush.
            send(server, request_response or i == messages - 1)
            if request_response:
                assert server.recv(1) == b"k"
        reader.join(timeout=30)
        assert not reader.is_alive()
        after = read_own_socket(server)
        listed = read_tcp_connections(
            local_port=server.getsockname()[1], remote_port=server.getpeername()[1]
        )
        assert listed == [after], "read_tcp_connections and read_own_socket disagree"
        return after.delta(before)


@pytest.mark.parametrize("request_response", [False, True], ids=["bulk", "request-response"])
def test_split_with_nodelay_sends_header_segments_that_msg_more_removes(
    request_response: bool,
) -> None:
    messages = 1000
    split = measure(send_split, messages, request_response)
    cork = measure(send_cork, messages, request_response)

    # The same bytes went out either way (a loaded machine may add a retransmission) ...
    total = messages * (len(HEADER) + len(PAYLOAD))
    for run in (split, cork):
        assert run["bytes_sent"] - run["bytes_retrans"] == total
    # ... but split put each 9-byte header in a segment of its own.
    if request_response:
        # Per response: split sends header and payload apart, cork sends them together.
        assert split["data_segs_out"] >= 1.8 * cork["data_segs_out"]
        assert cork["data_segs_out"] >= messages  # one flush cannot share a segment
    else:
        # A bulk stream with MSG_MORE leaves in full segments. The split stream's count
        # varies a lot (about 40 to 2000 here): the kernel's autocorking merges NODELAY
        # writes while earlier ones still sit in the device queue, i.e. when the peer lags.
        assert split["data_segs_out"] > cork["data_segs_out"]
    assert split["data_segs_out"] - split["retrans"] <= 2 * messages  # at most one per send()


def test_read_own_socket_matches_getsockopt_tcp_info() -> None:
    with tcp_pair() as (server, client):
        server.sendall(b"x" * 50_000)
        got = 0
        while got < 50_000:
            got += len(client.recv(65536))
        counters = read_own_socket(server)
        # struct tcp_info offsets (linux/tcp.h): an independent decode of the same counters.
        raw = server.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
        assert counters.snd_mss == struct.unpack_from("I", raw, 16)[0]
        assert counters.retrans == struct.unpack_from("I", raw, 100)[0]
        assert counters.bytes_acked == struct.unpack_from("Q", raw, 120)[0]
        assert counters.segs_out == struct.unpack_from("I", raw, 136)[0]
        assert counters.data_segs_out == struct.unpack_from("I", raw, 156)[0]
        assert counters.bytes_sent == struct.unpack_from("Q", raw, 200)[0]
        assert counters.bytes_sent >= 50_000
        assert counters.bytes_acked == counters.bytes_sent
        assert counters.state == "ESTABLISHED"
        assert (counters.local_addr, counters.local_port) == server.getsockname()
        assert (counters.remote_addr, counters.remote_port) == server.getpeername()


def test_read_tcp_connections_sees_both_ends_and_filters_by_port() -> None:
    with tcp_pair() as (server, client), tcp_pair() as (other, _):
        port = server.getsockname()[1]
        rows = read_tcp_connections(local_port=port)
        assert [(r.local_port, r.remote_port) for r in rows] == [
            (port, client.getsockname()[1])
        ]
        client_rows = read_tcp_connections(remote_port=port)
        assert [r.local_port for r in client_rows] == [client.getsockname()[1]]
        unfiltered = {(r.local_port, r.remote_port) for r in read_tcp_connections()}
        assert (port, client.getsockname()[1]) in unfiltered
        assert (other.getsockname()[1], other.getpeername()[1]) in unfiltered


def test_ipv6_and_dual_stack_sockets_are_found() -> None:
    with tcp_pair(socket.AF_INET6) as (server, _):
        server.sendall(b"y" * 1000)
        counters = read_own_socket(server)
        assert counters.local_addr == "::1"
        assert counters.bytes_sent == 1000
    # An IPv6 listener accepting an IPv4 client reports ::ffff:127.0.0.1; we report 127.0.0.1.
    with socket.socket(socket.AF_INET6) as listener:
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(("::", 0))
        listener.listen()
        with socket.create_connection(("127.0.0.1", listener.getsockname()[1])):
            server, _ = listener.accept()
            with server:
                counters = read_own_socket(server)
                assert isinstance(counters, TcpConnCounters)
                assert counters.remote_addr == "127.0.0.1"


def test_unconnected_or_non_tcp_sockets_raise_typed_error() -> None:
    with socket.socket() as lonely, pytest.raises(TcpInfoUnavailable, match="not connected"):
        read_own_socket(lonely)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.connect(("127.0.0.1", 9))
        with pytest.raises(TcpInfoUnavailable, match="TCP"):
            read_own_socket(udp)


def test_reads_work_inside_a_running_asyncio_loop() -> None:
    # The server is asyncio-based; pyroute2's sync API must not trip over its loop.
    async def main() -> tuple[TcpConnCounters, TcpConnCounters]:
        with tcp_pair() as (server, _):
            server.sendall(b"a" * 700)
            return read_own_socket(server), await read_own_socket_async(server)

    blocking, threaded = asyncio.run(main())
    assert blocking.bytes_sent == threaded.bytes_sent == 700
    assert blocking.local_port == threaded.local_port
