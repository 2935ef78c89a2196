"""The `writeshape` command. Thin: parses arguments, calls the library, prints.

Every user error becomes one line on stderr and a non-zero exit; library code never prints.
Each command lives in its own module of this package and registers itself on ``app``.
"""

from __future__ import annotations

import sys

import typer

from toolkit.errors import WriteshapeError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Profile how an HTTP/2 server's DATA frames reach the socket.",
)


def _standalone_errors() -> tuple[type[BaseException], ...]:
    """Error bases of the probe packages, which stand alone (no toolkit import), once they
    are in use: importing them costs time other commands need not pay, and before they
    are imported none of their errors can be raised."""
    found = []
    for module, name in (("strace_parsers.errors", "StraceError"),
                         ("tls_probe.errors", "TlsProbeError")):
        mod = sys.modules.get(module)
        if mod is not None:
            found.append(getattr(mod, name))
    return tuple(found)


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except WriteshapeError as exc:
        print(f"writeshape: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("writeshape: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if isinstance(exc, _standalone_errors()):
            print(f"writeshape: error: {exc}", file=sys.stderr)
            sys.exit(2)
        # Usage errors from click (typer vendors its own copy, so match by shape):
        # one line, not a usage box.
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            print(f"writeshape: error: {exc.format_message()}", file=sys.stderr)
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            print("writeshape: interrupted", file=sys.stderr)
            sys.exit(130)
        raise
    sys.exit(code if isinstance(code, int) else 0)
