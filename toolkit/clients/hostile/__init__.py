"""Scripted hostile HTTP/2 clients, one function per attack, for testing servers.

    from toolkit.clients import hostile
    result = hostile.rapid_reset(hostile.Target("127.0.0.1", port))
    result.goaway_error_code  # what the server answered

`peer` holds the raw attacking connection, `attacks` the attacks. Loopback only.
"""

from toolkit.clients.hostile.attacks import (
    ATTACKS,
    abrupt_reset,
    continuation_flood,
    data_dribble,
    empty_frames_flood,
    garbage_tls,
    half_open,
    internal_data_buffering,
    ping_flood,
    priority_churn,
    rapid_reset,
    reset_flood,
    settings_flood,
    settings_too_many_entries,
    slow_reader,
    slow_start,
    zero_length_headers,
    zero_window,
)
from toolkit.clients.hostile.peer import AttackResult, HostileTargetError, Peer, Target

__all__ = [
    "ATTACKS", "AttackResult", "HostileTargetError", "Peer", "Target", "abrupt_reset",
    "continuation_flood", "data_dribble", "empty_frames_flood", "garbage_tls", "half_open",
    "internal_data_buffering", "ping_flood", "priority_churn", "rapid_reset", "reset_flood",
    "settings_flood", "settings_too_many_entries", "slow_reader", "slow_start",
    "zero_length_headers", "zero_window",
]
