"""A strategy's TLS plan run through memory BIOs: SSL_writes in, socket calls out.

The strategy decides every SSL_write (`SslWrite`) and when the ciphertext made so far
goes to the socket (`CipherFlush`); this turns that plan into the `SocketCall`s the
server's `SocketWriter` issues. No socket I/O happens here, only OpenSSL's encryption
into the outgoing memory BIO of a `tls_probe.MemoryBioTLS` (instrumented or not).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from toolkit.strategies import CipherFlush, SocketCall, SslWrite, TlsStep

if TYPE_CHECKING:
    from tls_probe import MemoryBioTLS


def tls_socket_calls(tls: MemoryBioTLS, steps: Iterator[TlsStep]) -> Iterator[SocketCall]:
    """Run the SSL_writes of a TLS plan; turn each CipherFlush into one socket call.

    Ciphertext is taken after every SSL_write, so `writev`/`chain` gather one buffer per
    SSL_write into their sendmsg (the records stay as OpenSSL wrote them)."""
    write, take = tls.write_plaintext, tls.take_ciphertext
    pending: list[bytes] = []
    for step in steps:
        if isinstance(step, SslWrite):
            write(step.plaintext)
            out = take()
            if out:
                pending.append(out)
        elif pending:
            assert isinstance(step, CipherFlush)
            if step.method == "sendmsg":
                yield SocketCall("sendmsg", tuple(pending), step.flags)
            else:
                yield SocketCall("send", (pending[0] if len(pending) == 1
                                          else b"".join(pending),), step.flags)
            pending = []
    if pending:  # a plan that forgot its last flush must not lose bytes
        yield SocketCall("send", (b"".join(pending),))
