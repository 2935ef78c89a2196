"""h2 keeps the protocol state; DATA payloads travel by reference.

``h2.H2Connection.send_data`` copies a payload about four times (``memoryview.tobytes``,
``serialize_body``'s join, header + body, the ``data_to_send`` buffer). Here h2 still runs
its state machines and flow-control windows for every run of DATA, exactly as
``send_data`` runs them, but no frame object is built: the wire gets 9-byte headers we
pack and views of the payload itself. Everything else h2 emits (HEADERS, SETTINGS,
WINDOW_UPDATE, PING, GOAWAY) comes from ``data_to_send()`` and keeps its place in the
segment order.
"""

from __future__ import annotations

import h2.connection
import h2.exceptions
from h2.connection import ConnectionInputs
from h2.stream import StreamInputs

from toolkit.protocol.frames import data_frame_header
from toolkit.strategies import Buffer


class ZeroCopyH2Connection(h2.connection.H2Connection):
    """An h2 server connection whose DATA frames leave as (header bytes, payload view)."""

    def send_data_run(self, stream_id: int, payload: memoryview, frame_max: int,
                      end_stream: bool, out: list[Buffer]) -> None:
        """Send ``payload`` as consecutive DATA frames of at most ``frame_max`` bytes.

        h2's ``send_data`` steps are taken once for the whole run: its flow-control check,
        the connection's and the stream's state transitions and window debits, in its
        order (they are the same for one frame of N bytes as for k frames adding up to N,
        since nothing is padded). No frame object is built: the run is cut into wire
        frames here, which takes h2's per-frame Python cost off the hot path.
        """
        if frame_max > self.max_outbound_frame_size:
            raise ValueError("frame_max exceeds the peer's SETTINGS_MAX_FRAME_SIZE")
        total = len(payload)
        stream = self._get_stream_by_id(stream_id)
        window = min(self.outbound_flow_control_window, stream.outbound_flow_control_window)
        if total > window:
            raise h2.exceptions.FlowControlError(
                f"Cannot send {total} bytes, flow control window is {window}")
        self.state_machine.process_input(ConnectionInputs.SEND_DATA)
        stream.state_machine.process_input(StreamInputs.SEND_DATA)
        if end_stream:
            stream.state_machine.process_input(StreamInputs.SEND_END_STREAM)
        stream.outbound_flow_control_window -= total
        self.outbound_flow_control_window -= total
        queued = self.data_to_send()  # anything h2 queued goes before this run
        if queued:
            out.append(queued)
        self._cut_frames(stream_id, payload, frame_max, end_stream, out)

    @staticmethod
    def _cut_frames(sid: int, view: memoryview, frame_max: int, end: bool,
                    out: list[Buffer]) -> None:
        total = len(view)
        append = out.append
        if total == 0:
            append(data_frame_header(0, sid, end))
            return
        full = total // frame_max * frame_max
        if full == total:
            full -= frame_max  # the last frame may carry END_STREAM
        # Full frames of one run share one header: the same 9 bytes, made once.
        header = data_frame_header(frame_max, sid, False)
        for off in range(0, full, frame_max):
            append(header)
            append(view[off:off + frame_max])
        append(data_frame_header(total - full, sid, end))
        append(view[full:])
