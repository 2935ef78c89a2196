"""tls_probe's own errors: it stands alone (it imports nothing from toolkit).

Every error's message is one line that tells the user what to do; an application that
uses tls_probe (writeshape's CLI does) catches :class:`TlsProbeError` and prints it.
"""


class TlsProbeError(Exception):
    """Base of every error tls_probe raises on purpose."""


class TlsConfigError(TlsProbeError, ValueError):
    """A setting that cannot be used (a TLS version, a CA file)."""


class ToolMissingError(TlsProbeError):
    """An external program (tshark, dumpcap) is not installed."""

    def __init__(self, tool: str, package: str) -> None:
        super().__init__(
            f"{tool} not found: install it (Debian: apt-get install {package}) or put it on PATH")
        self.tool = tool
        self.package = package


class CapturePermissionError(TlsProbeError):
    """Capturing packets needs privileges this process lacks."""
