"""h2 keeps the protocol state; DATA payloads travel by reference.

``h2.H2Connection.send_data`` copies a payload about four times (``memoryview.tobytes``,
``serialize_body``'s join, header + body, the ``data_to_send`` buffer). Here h2 still runs
its state machines and flow-control windows for every DATA frame, but the frame it builds
is intercepted before serialization: the wire gets a 9-byte header we pack and the
payload view itself. Everything else h2 emits (HEADERS, SETTINGS, WINDOW_UPDATE, PING,
GOAWAY) comes from ``data_to_send()`` and keeps its place in the segment order.
"""

from __future__ import annotations

import h2.config
import h2.connection
from hyperframe.frame import DataFrame, Frame

from toolkit.protocol.frames import data_frame_header
from toolkit.strategies import Buffer


class PayloadRef:
    """What h2 sees as the payload: a length, without the bytes (h2 copies real views)."""

    __slots__ = ("view",)

    def __init__(self, view: memoryview) -> None:
        self.view = view

    def __len__(self) -> int:
        return len(self.view)


class ZeroCopyH2Connection(h2.connection.H2Connection):
    """An h2 server connection whose DATA frames leave as (header bytes, payload view)."""

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config=config)
        self._captured: list[DataFrame] | None = None

    def _prepare_for_sending(self, frames: list[Frame]) -> None:
        if self._captured is not None and frames and isinstance(frames[0], DataFrame):
            self._captured.extend(frames)  # type: ignore[arg-type]
            return
        super()._prepare_for_sending(frames)

    def send_data_run(self, stream_id: int, payload: memoryview, frame_max: int,
                      end_stream: bool, out: list[Buffer]) -> None:
        """Send ``payload`` as consecutive DATA frames of at most ``frame_max`` bytes.

        h2 is asked once for the whole run (its flow-control check, window updates and
        stream state transitions are the same for one frame of N bytes as for k frames
        adding up to N, since nothing is padded), then the run is cut into wire frames
        here. This takes h2's per-frame Python cost (about 7 us) off the hot path.
        """
        if frame_max > self.max_outbound_frame_size:
            raise ValueError("frame_max exceeds the peer's SETTINGS_MAX_FRAME_SIZE")
        self._send_captured(stream_id, payload, end_stream, frame_max, out)

    def _send_captured(self, stream_id: int, payload: memoryview, end_stream: bool,
                       frame_max: int, out: list[Buffer]) -> None:
        captured: list[DataFrame] = []
        self._captured = captured
        real_max = self.max_outbound_frame_size
        # Only the size check sees the run's length; the wire frames are cut below.
        self.max_outbound_frame_size = max(real_max, len(payload))
        try:
            self.send_data(stream_id, PayloadRef(payload), end_stream=end_stream)  # type: ignore[arg-type]
        finally:
            self._captured = None
            self.max_outbound_frame_size = real_max
        queued = self.data_to_send()
        if queued:
            out.append(queued)
        for frame in captured:
            view: memoryview = frame.data.view  # type: ignore[attr-defined]  # a PayloadRef
            end = "END_STREAM" in frame.flags
            total = len(view)
            if total == 0:
                out.append(data_frame_header(0, frame.stream_id, end))
                continue
            append = out.append
            sid = frame.stream_id
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
