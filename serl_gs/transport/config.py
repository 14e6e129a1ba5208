"""Typed, frozen configs for the two ends of the transport: one for the learner, one for each actor.

The learner's `TransitionServer` and `ParamPublisher` read `LearnerTransportConfig`; the actor's
`TransitionClient` and `ParamSubscriber` read `ActorTransportConfig`. Both validate themselves on
construction, so a bad flag fails at start-up with a `ValueError` naming it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Literal

MIB = 1 << 20

OverflowPolicy = Literal["block", "drop_oldest"]
_ACTOR_ID_RE = re.compile(r"^[A-Za-z0-9_.:@/+-]{1,128}$")


@dataclass(frozen=True)
class AuthConfig:
    """Authentication and encryption of every socket.

    `secret_file` (any file of >= 16 bytes, e.g. written by `python -m serl_gs.transport.secret PATH`)
    turns on ZeroMQ CURVE: the learner's and the actors' key pairs are derived from the file's bytes,
    every connection is encrypted, and the learner admits only peers holding the same file. A peer
    without it cannot complete the handshake: it gets nothing in and receives nothing.
    """

    secret_file: str | None = None

    @property
    def enabled(self) -> bool:
        return self.secret_file is not None

    def __post_init__(self) -> None:
        if self.secret_file is not None and not str(self.secret_file).strip():
            raise ValueError(f"AuthConfig.secret_file must be a path or None, got {self.secret_file!r}")


def port_layout(base: int) -> dict[str, int]:
    """The one port rule: transitions on `base`, parameters on `base`+1, parameter snapshots on `base`+2.

    Base 0 asks for three free ports (the learner's `TransitionServer.port`, `ParamPublisher.port` and
    `.snapshot_port` then say which). Returns the three port fields of either transport config.
    """
    _check_port("base port", base)
    if base > 65535 - 2:
        raise ValueError(f"base port must leave room for base+2 <= 65535, got {base}")
    if base == 0:
        return {"transitions_port": 0, "params_port": 0, "params_snapshot_port": 0}
    return {"transitions_port": base, "params_port": base + 1, "params_snapshot_port": base + 2}


def _check_port(name: str, port: int) -> None:
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError(f"{name} must be an int in [0, 65535] (0 = pick a free port), got {port!r}")


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(
            f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}"
        )


def _check_int(name: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be an int in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class LearnerTransportConfig:
    """The learner's side: where to bind and how much to accept.

    Memory bound: each actor stream holds at most `max_credits_per_actor` unacknowledged batches at the
    learner, and at most `max_actors` streams are tracked, so the receive queue never exceeds
    max_actors * max_credits_per_actor batches of at most `max_message_bytes` each.
    """

    bind: str = "127.0.0.1"  # the interface to listen on; "0.0.0.0" opens it to the network
    transitions_port: int = 5588
    params_port: int = 5589  # PUB/SUB broadcast of parameters
    params_snapshot_port: int = 5590  # request/reply: a joining actor fetches the current parameters here
    auth: AuthConfig = AuthConfig()
    max_message_bytes: int = 256 * MIB  # one transition batch, all frames together
    max_param_bytes: int = 1024 * MIB
    credits_per_actor: int = 8  # initial flow-control window: unacknowledged batches per actor
    max_credits_per_actor: int = 64  # hard cap; `set_credits` cannot exceed it
    max_actors: int = 1024  # streams tracked at once (an actor restart starts a new stream)
    stream_forget_s: float = 600.0  # an idle stream with nothing queued is forgotten after this
    # When max_actors streams are tracked, a stream idle this long with nothing outstanding gives its place to a
    # new one (a live actor pings every heartbeat_s); refused streams give theirs at once, and go after this long.
    stream_evict_idle_s: float = 10.0
    socket_timeout_s: float = 5.0  # SNDTIMEO / RCVTIMEO on every socket
    poll_interval_s: float = 0.05  # how often background threads look at their stop flag
    heartbeat_s: float = 2.0  # ZMTP heartbeats; a dead peer is dropped after 3x this
    linger_s: float = 1.0  # how long close() keeps flushing acks before dropping them
    reject_log_interval_s: float = 10.0  # rejected input is logged at most this often (always counted)

    def __post_init__(self) -> None:
        if not isinstance(self.bind, str) or not self.bind or any(c.isspace() for c in self.bind):
            raise ValueError(f"bind must be an interface address such as '127.0.0.1', got {self.bind!r}")
        for name in ("transitions_port", "params_port", "params_snapshot_port"):
            _check_port(name, getattr(self, name))
        ports = [self.transitions_port, self.params_port, self.params_snapshot_port]
        nonzero = [p for p in ports if p]
        if len(set(nonzero)) != len(nonzero):
            raise ValueError(f"transitions/params/params_snapshot ports must differ, got {ports}")
        if not isinstance(self.auth, AuthConfig):
            raise ValueError(f"auth must be an AuthConfig, got {type(self.auth).__name__}")
        _check_int("max_message_bytes", self.max_message_bytes, 1024, 1 << 40)
        _check_int("max_param_bytes", self.max_param_bytes, 1024, 1 << 40)
        _check_int("max_credits_per_actor", self.max_credits_per_actor, 1, 1 << 20)
        _check_int("credits_per_actor", self.credits_per_actor, 0, self.max_credits_per_actor)
        _check_int("max_actors", self.max_actors, 1, 1 << 20)
        for name in ("stream_forget_s", "stream_evict_idle_s", "socket_timeout_s", "poll_interval_s", "heartbeat_s"):
            _check_positive(name, getattr(self, name))
        for name in ("linger_s", "reject_log_interval_s"):
            _check_positive(name, getattr(self, name), allow_zero=True)

    def replace(self, **changes) -> LearnerTransportConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ActorTransportConfig:
    """The actor's side: where the learner is, who this actor is, and its flow-control policy.

    Flow control: `send()` puts a batch in a pending buffer of `max_pending_batches`; a background
    thread moves it on the wire when the learner grants credit. When the buffer is full,
    `overflow="block"` makes `send()` wait (at most `block_timeout_s`, then `TimeoutError`), and
    `overflow="drop_oldest"` drops the oldest pending batch, counts it and marks the next batch's
    header with `dropped_before` so the replay does not pair records across the hole.
    While the learner is unreachable (not started yet, restarting, network down), the buffer holds up to
    `away_buffer_bytes` instead, so the actor keeps acting and the learner gets the backlog when it returns;
    while connected, the learner's credits pace the actor through the small buffer.
    Memory bound: max(max_pending_batches batches, away_buffer_bytes) + max_in_flight_batches batches.
    """

    actor_id: str
    host: str = "127.0.0.1"
    transitions_port: int = 5588
    params_port: int = 5589
    params_snapshot_port: int = 5590
    auth: AuthConfig = AuthConfig()
    max_message_bytes: int = 256 * MIB
    max_param_bytes: int = 1024 * MIB
    max_pending_batches: int = 8
    away_buffer_bytes: int = 256 * MIB  # 0: block (or drop) after max_pending_batches even while away
    max_in_flight_batches: int = 64  # further capped by the learner's credits
    overflow: OverflowPolicy = "block"
    block_timeout_s: float | None = None  # None: block until the learner takes the data (or close())
    # False: arrays that own their memory are sent without a copy and marked read-only (writing into
    # one later raises); views are copied. True: always copy (costs a fresh allocation per batch).
    copy_on_send: bool = False
    ack_timeout_s: float = 5.0  # resend a batch the learner has not confirmed receiving after this
    socket_timeout_s: float = 5.0
    poll_interval_s: float = 0.05
    heartbeat_s: float = 2.0
    reconnect_s: float = 0.1  # first reconnect delay; doubles up to reconnect_max_s
    reconnect_max_s: float = 2.0
    # A learner that tracks its maximum of actor streams refuses a new one (too_many_actors): the actor holds its
    # batches and tries again after full_retry_s, doubling (with jitter) up to full_retry_max_s.
    full_retry_s: float = 1.0
    full_retry_max_s: float = 30.0
    linger_s: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.actor_id, str) or not _ACTOR_ID_RE.match(self.actor_id):
            raise ValueError(
                f"actor_id must be 1-128 characters of [A-Za-z0-9_.:@/+-], got {self.actor_id!r}"
            )
        if not isinstance(self.host, str) or not self.host or any(c.isspace() for c in self.host):
            raise ValueError(f"host must be a host name or address, got {self.host!r}")
        for name in ("transitions_port", "params_port", "params_snapshot_port"):
            _check_port(name, getattr(self, name))
            if getattr(self, name) == 0:
                raise ValueError(f"{name} must name the learner's port, got 0")
        if not isinstance(self.auth, AuthConfig):
            raise ValueError(f"auth must be an AuthConfig, got {type(self.auth).__name__}")
        _check_int("max_message_bytes", self.max_message_bytes, 1024, 1 << 40)
        _check_int("max_param_bytes", self.max_param_bytes, 1024, 1 << 40)
        _check_int("max_pending_batches", self.max_pending_batches, 1, 1 << 20)
        _check_int("away_buffer_bytes", self.away_buffer_bytes, 0, 1 << 44)
        _check_int("max_in_flight_batches", self.max_in_flight_batches, 1, 1 << 20)
        if self.overflow not in ("block", "drop_oldest"):
            raise ValueError(f"overflow must be 'block' or 'drop_oldest', got {self.overflow!r}")
        if self.block_timeout_s is not None:
            _check_positive("block_timeout_s", self.block_timeout_s)
        for name in (
            "ack_timeout_s",
            "socket_timeout_s",
            "poll_interval_s",
            "heartbeat_s",
            "reconnect_s",
            "reconnect_max_s",
            "full_retry_s",
            "full_retry_max_s",
        ):
            _check_positive(name, getattr(self, name))
        _check_positive("linger_s", self.linger_s, allow_zero=True)

    def replace(self, **changes) -> ActorTransportConfig:
        return dataclasses.replace(self, **changes)
