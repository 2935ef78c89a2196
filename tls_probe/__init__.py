"""TLS records made visible: a pure record-layer parser, an instrumented memory-BIO TLS
connection, throwaway certificates, and a tshark adapter used as the oracle.

Pure core: `records` (parser, counter; its hot path in C, `_recordwalk.c`, when built).
Adapters: `bio` (OpenSSL via ssl.SSLObject), `certs` (trustme), `tshark` (dumpcap/tshark
subprocesses).
"""

from tls_probe.bio import (
    InstrumentedTLS,
    MemoryBioTLS,
    TlsClosedError,
    TlsError,
    TlsHandshakeError,
    TlsProtocolError,
    TlsStats,
)
from tls_probe.certs import CertBundle, make_cert_bundle, make_client_context, make_server_context
from tls_probe.errors import (
    CapturePermissionError,
    TlsConfigError,
    TlsProbeError,
    ToolMissingError,
)
from tls_probe.records import (
    CONTENT_TYPE_NAMES,
    NATIVE_RECORD_TALLY,
    RECORD_COUNTER,
    Record,
    RecordCounter,
    RecordLayerError,
    RecordParser,
)

__all__ = [
    "CONTENT_TYPE_NAMES",
    "NATIVE_RECORD_TALLY",
    "RECORD_COUNTER",
    "CapturePermissionError",
    "CertBundle",
    "InstrumentedTLS",
    "MemoryBioTLS",
    "Record",
    "RecordCounter",
    "RecordLayerError",
    "RecordParser",
    "TlsClosedError",
    "TlsConfigError",
    "TlsError",
    "TlsHandshakeError",
    "TlsProbeError",
    "TlsProtocolError",
    "TlsStats",
    "ToolMissingError",
    "make_cert_bundle",
    "make_client_context",
    "make_server_context",
]
