"""A throwaway CA and server certificate made at start-up, and the SSLContexts around them.

Nothing secret is committed: trustme makes a fresh CA and a certificate for localhost,
127.0.0.1 and ::1 in memory; PEM files are written to a private temporary directory so
that external clients (curl --cacert, h2load, nghttpd key/cert arguments) can use them.
"""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trustme

from tls_probe.errors import TlsConfigError

SERVER_NAMES = ("localhost", "127.0.0.1", "::1")
TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
# RFC 9113 section 9.2.2: HTTP/2 over TLS 1.2 needs ephemeral key exchange and AEAD.
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


@dataclass
class CertBundle:
    """PEM files of one throwaway CA and the server certificate it signed."""

    ca_pem_path: str
    cert_pem_path: str  # server certificate chain (leaf first)
    key_pem_path: str
    server_names: tuple[str, ...]
    _server_cert: trustme.LeafCert = field(repr=False)
    _tmpdir: tempfile.TemporaryDirectory[str] = field(repr=False)

    def configure_server(self, ctx: ssl.SSLContext) -> None:
        self._server_cert.configure_cert(ctx)

    def cleanup(self) -> None:
        """Remove the PEM files (also done when the bundle is garbage collected)."""
        self._tmpdir.cleanup()


def make_cert_bundle(server_names: Sequence[str] = SERVER_NAMES) -> CertBundle:
    ca = trustme.CA(organization_name="writeshape throwaway CA")
    leaf = ca.issue_cert(*server_names)
    tmpdir = tempfile.TemporaryDirectory(prefix="writeshape-tls-")
    base = Path(tmpdir.name)
    ca_path, cert_path, key_path = base / "ca.pem", base / "server.pem", base / "server.key"
    ca.cert_pem.write_to_path(str(ca_path))
    for i, pem in enumerate(leaf.cert_chain_pems):
        pem.write_to_path(str(cert_path), append=i > 0)
    leaf.private_key_pem.write_to_path(str(key_path))
    return CertBundle(
        ca_pem_path=str(ca_path),
        cert_pem_path=str(cert_path),
        key_pem_path=str(key_path),
        server_names=tuple(server_names),
        _server_cert=leaf,
        _tmpdir=tmpdir,
    )


def _tls_version(tls_version: str) -> ssl.TLSVersion:
    try:
        return TLS_VERSIONS[tls_version]
    except KeyError:
        raise TlsConfigError(
            f"unsupported TLS version {tls_version!r}: use one of {', '.join(TLS_VERSIONS)}"
        ) from None


def make_server_context(
    *, tls_version: str = "1.3", alpn: Sequence[str] = ("h2",), bundle: CertBundle | None = None
) -> tuple[ssl.SSLContext, CertBundle]:
    """A server context pinned to one TLS version, with ALPN and a fresh (or given) cert."""
    version = _tls_version(tls_version)
    bundle = bundle or make_cert_bundle()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = version
    ctx.maximum_version = version
    if version is ssl.TLSVersion.TLSv1_2:
        ctx.set_ciphers(_TLS12_CIPHERS)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    bundle.configure_server(ctx)
    return ctx, bundle


def make_client_context(
    ca_pem_path: str | None,
    *,
    insecure: bool = False,
    alpn: Sequence[str] = ("h2",),
    tls_version: str | None = None,
) -> ssl.SSLContext:
    """A client context trusting `ca_pem_path` (or the system store); `insecure` skips checks."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif ca_pem_path is not None:
        try:
            ctx.load_verify_locations(cafile=ca_pem_path)
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(
                f"cannot load CA certificate {ca_pem_path}: {exc}; pass a PEM file or --insecure"
            ) from exc
    else:
        ctx.load_default_certs()
    if tls_version is not None:
        ctx.minimum_version = ctx.maximum_version = _tls_version(tls_version)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx
