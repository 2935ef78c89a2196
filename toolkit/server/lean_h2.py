"""h2 without the per-request work that protects nothing here.

h2 keeps every protocol state machine and flow-control window; what is cut is work that
gives the same answer every time for the same input, or that nobody reads:

- **Logging.** h2 calls ``config.logger.debug/trace`` on every frame and state change
  (some with an eager ``repr(frame)``), hpack a real ``logging.Logger.debug`` about 20
  times per request. :class:`SilentLogger` is a C no-op, `_receive_frame` drops the
  eager repr, and :func:`silence_hpack_logging` (called by the server process) swaps
  hpack's module loggers for the same no-op.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import hpack.hpack
import hpack.table
from hyperframe.frame import Frame, RstStreamFrame

from toolkit.server.zero_copy import ZeroCopyH2Connection


class SilentLogger:
    """h2's logger interface at the cost of one C call: ``str.format`` of an empty string
    takes any arguments and ignores them."""

    debug = trace = "".format


def silence_hpack_logging() -> None:
    """hpack logs through module-level ``logging`` loggers, whose ``debug`` is a Python
    call chain even when disabled. For the server process only: nothing reads them."""
    silent = SilentLogger()
    hpack.hpack.log = silent  # type: ignore[assignment]
    hpack.table.log = silent  # type: ignore[assignment]


def lean_h2_config() -> h2.config.H2Configuration:
    # Inbound headers are validated (clients may be hostile); outbound ones are ours and
    # fixed, so their validation and normalization would only cost time per response.
    return h2.config.H2Configuration(client_side=False, header_encoding=None,
                                     validate_inbound_headers=True,
                                     validate_outbound_headers=False,
                                     normalize_outbound_headers=False,
                                     logger=SilentLogger())  # type: ignore[arg-type]


class LeanH2Connection(ZeroCopyH2Connection):
    """An h2 server connection with the lean request path described in the module doc."""

    def _receive_frame(self, frame: Frame) -> list[h2.events.Event]:
        # h2's own, without ``logger.trace("Received frame: %s", repr(frame))``: the repr
        # is built on every frame (about 1 us for a HEADERS frame) and never read.
        events: list[h2.events.Event]
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except h2.exceptions.StreamClosedError as e:
            if not self._stream_is_closed_by_reset(e.stream_id):
                raise
            f = RstStreamFrame(e.stream_id)
            f.error_code = e.error_code
            self._prepare_for_sending([f])
            events = e._events
        except h2.exceptions.StreamIDTooLowError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = h2.errors.ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise h2.exceptions.StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events
