"""The learner's end of the transition stream: `TransitionServer`.

A background I/O thread owns one ROUTER socket. It validates each message (hostile input never
raises out of it), drops duplicates by (actor, session, seq), and puts accepted batches in a queue
that `get()` drains. Acks are cumulative and sent when `get()` hands a batch over, so a batch that
was received but not yet taken is resent by its actor after a learner restart: no loss.
Flow control is by credits: each actor may have at most `credits` batches that the learner has not
taken yet; `set_credits` is the learner's rate-limiter hook (0 pauses every actor).
"""

from __future__ import annotations

import collections
import logging
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from serl_gs.transport import wire
from serl_gs.transport._io_thread import IoThread
from serl_gs.transport._ratelog import RateLimitedLog
from serl_gs.transport._sockets import bind, bound_port, configure_socket
from serl_gs.transport.auth import load_curve_keys, make_curve_server
from serl_gs.transport.config import LearnerTransportConfig

logger = logging.getLogger(__name__)

_MONITOR_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_DISCONNECTED
)
_MAX_MESSAGES_PER_POLL = 256  # then send acks and look at the stop flag again


@dataclass(frozen=True)
class BatchHeader:
    """Who sent a batch and with which policy. One batch = one record per env for `num_records` envs."""

    actor_id: str
    session: int  # random per actor process: a restarted actor is a new stream
    seq: int  # contiguous per (actor_id, session), in delivery order
    index: int  # the actor's send() count; gaps only if the actor used overflow="drop_oldest"
    dropped_before: int  # batches the actor dropped right before this one: do not pair records across
    param_version: int  # the parameter version of the policy that acted
    num_records: int
    nbytes: int
    received_at: float  # time.time() on the learner


class TransitionBatch(NamedTuple):
    header: BatchHeader
    arrays: dict[str, np.ndarray]  # read-only views, each [num_records, ...]


@dataclass(frozen=True)
class StreamPosition:
    """Where a stream stands: every seq below `next_seq` was acknowledged. Checkpoint these
    with the replay and pass them back (`resume_positions`) so a restarted learner drops resends of
    batches it already has, even after a crash."""

    actor_id: str
    session: int
    next_seq: int


class _Stream:
    __slots__ = (
        "actor_id",
        "session",
        "next_seq",
        "delivered",
        "unacked",
        "ack_tx",
        "routing_id",
        "last_seen",
        "batches",
        "records",
        "bytes",
        "param_version",
        "refused",
    )

    def __init__(self, actor_id: str, session: int, start: int) -> None:
        self.actor_id = actor_id
        self.session = session
        self.next_seq = start  # next seq to accept
        self.delivered = start  # every seq below was acknowledged (taken by get(), or ack())
        self.unacked = 0  # received and not acknowledged yet: queued, or taken with ack=False
        self.ack_tx = -1  # highest tx handled since the last ack we sent (-1: none)
        self.routing_id: bytes | None = None
        self.last_seen = time.monotonic()
        self.batches = 0
        self.records = 0
        self.bytes = 0
        self.param_version = -1
        self.refused: tuple[str, str] | None = None  # (reason, detail): the learner refused this stream's data


class _Queued(NamedTuple):
    stream: _Stream
    seq: int
    batch: TransitionBatch


class TransitionServer:
    """Receives transition batches from any number of actors. Thread-safe; use as a context manager.

    `get(timeout)` returns the next `TransitionBatch` (header, arrays) or None on timeout/after close.
    """

    def __init__(self, config: LearnerTransportConfig, *, resume_positions: Iterable[StreamPosition] = ()) -> None:
        if not isinstance(config, LearnerTransportConfig):
            raise ValueError(f"config must be a LearnerTransportConfig, got {type(config).__name__}")
        self._config = config
        self._keys = load_curve_keys(config.auth)
        self._incarnation = secrets.randbits(63)
        self._lock = threading.Lock()
        self._nonempty = threading.Condition(self._lock)
        self._queue: collections.deque[_Queued] = collections.deque()
        self._streams: dict[tuple[str, int], _Stream] = {}
        for pos in resume_positions:
            if not isinstance(pos, StreamPosition) or pos.next_seq < 0:
                raise ValueError(f"resume_positions must hold StreamPosition(next_seq >= 0), got {pos!r}")
            self._streams[(pos.actor_id, pos.session)] = _Stream(pos.actor_id, pos.session, pos.next_seq)
        self._ack_due: set[tuple[str, int]] = set()
        self._replies_due: list[tuple[bytes, dict[str, Any]]] = []  # sent by the I/O thread, with the acks
        self._credit_broadcast = False
        self._credits = config.credits_per_actor
        self._counters = collections.Counter()
        self._rejected = dict.fromkeys(wire.REJECT_REASONS, 0)
        self._queue_records = 0
        self._queue_bytes = 0
        self._closed = False
        self._port = 0
        self._reject_log = RateLimitedLog(logger, "TransitionServer", config.reject_log_interval_s)
        self._io = IoThread(
            "transition-server",
            open_sockets=self._open_sockets,
            turn=self._turn,
            poll_interval_s=config.poll_interval_s,
            finish=lambda: self._send_due_acks(self._router),  # the last deliveries must reach their actors
            on_failure=self._on_io_failure,
        )

    # ------------------------------------------------------------------------------------------
    # Public API (any thread)

    @property
    def port(self) -> int:
        """The bound transitions port (differs from the config when it asked for port 0)."""
        return self._port

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def credits(self) -> int:
        return self._credits

    def get(self, timeout: float | None = None, *, ack: bool = True) -> TransitionBatch | None:
        """The next batch, in per-actor order; None after `timeout` seconds or once closed.

        With ack=True, taking a batch acknowledges it: the actor frees it and will not resend it.
        With ack=False, call `ack(batch.header)` once the batch is stored (e.g. in the replay): if the
        learner dies before that, the actor resends it to the next learner. Unacknowledged batches
        count against the actor's credits.
        """
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._nonempty:
            while not self._queue:
                if self._closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                # Bounded waits so a closed server is noticed even without a notify.
                self._nonempty.wait(self._config.poll_interval_s if remaining is None else remaining)
            if self._closed:
                return None
            item = self._queue.popleft()
            self._queue_records -= item.batch.header.num_records
            self._queue_bytes -= item.batch.header.nbytes
            wake = ack and self._acknowledge(item.stream, item.seq)
        if wake:
            self._io.wake()
        return item.batch

    def ack(self, header: BatchHeader) -> None:
        """Acknowledges a batch taken with get(ack=False), and every earlier one of its stream."""
        if not isinstance(header, BatchHeader):
            raise ValueError(f"ack() takes a BatchHeader (batch.header), got {type(header).__name__}")
        with self._lock:
            stream = self._streams.get((header.actor_id, header.session))
            if stream is None or header.seq >= stream.next_seq:
                raise ValueError(f"ack() of a batch this server never delivered: {header.actor_id} seq {header.seq}")
            wake = self._acknowledge(stream, header.seq)
        if wake:
            self._io.wake()

    def refuse(self, header: BatchHeader, reason: str, detail: str) -> None:
        """Refuses a batch taken with get(ack=False) that the learner cannot use (e.g. another task's records).

        The batch is acknowledged (its actor will not resend it) and counted under `reason`; its actor hears
        `reason: detail` and stops with that error. The rest of its stream is refused too, counted the same,
        without being queued: those still queued are dropped now, later ones as they arrive.
        """
        if not isinstance(header, BatchHeader):
            raise ValueError(f"refuse() takes a BatchHeader (batch.header), got {type(header).__name__}")
        if reason not in self._rejected:
            raise ValueError(f"reason must be one of {list(self._rejected)}, got {reason!r}")
        with self._lock:
            stream = self._streams.get((header.actor_id, header.session))
            if stream is None or header.seq >= stream.next_seq:
                raise ValueError(f"refuse() of a batch this server never delivered: {header.actor_id} seq {header.seq}")
            stream.refused = (reason, detail)
            last = header.seq
            kept: collections.deque[_Queued] = collections.deque()
            for item in self._queue:
                if item.stream is stream:
                    last = max(last, item.seq)
                    self._queue_records -= item.batch.header.num_records
                    self._queue_bytes -= item.batch.header.nbytes
                    self._rejected[reason] += 1
                else:
                    kept.append(item)
            self._queue = kept
            self._rejected[reason] += 1
            self._acknowledge(stream, last)
            if stream.routing_id is not None:
                self._replies_due.append((stream.routing_id, _rejection(header.session, header.seq, reason, detail)))
        self._io.wake()  # the caller logs the refusal (e.g. once per actor): only counted here

    def _acknowledge(self, stream: _Stream, seq: int) -> bool:
        """Caller holds the lock. Acks are cumulative per stream, like the actor's view of them.

        True when the I/O thread must be woken: if acks were already due, a wake-up is pending or
        the I/O thread has not sent them yet (it sends every due ack at the end of each turn).
        """
        if seq < stream.delivered:
            return False
        stream.unacked -= seq + 1 - stream.delivered
        stream.delivered = seq + 1
        wake = not self._ack_due
        self._ack_due.add((stream.actor_id, stream.session))
        return wake

    def set_credits(self, credits: int) -> None:
        """Rate-limiter hook: how many unacknowledged batches each actor may have out (0 pauses all).

        Actors hear the new value at once; batches already sent are still accepted.
        """
        cap = self._config.max_credits_per_actor
        if not isinstance(credits, int) or isinstance(credits, bool) or not 0 <= credits <= cap:
            raise ValueError(f"credits must be an int in [0, max_credits_per_actor={cap}], got {credits!r}")
        with self._lock:
            changed = credits != self._credits
            self._credits = credits
            self._credit_broadcast = self._credit_broadcast or changed
        self._io.wake()

    def positions(self) -> list[StreamPosition]:
        """Per-stream acknowledged positions: checkpoint them with the replay they describe."""
        with self._lock:
            return [StreamPosition(s.actor_id, s.session, s.delivered) for s in self._streams.values()]

    def stats(self, current_param_version: int | None = None) -> dict[str, Any]:
        """Counters for logging. With `current_param_version`, each actor gets its `param_lag`."""
        now = time.monotonic()
        with self._lock:
            actors: dict[str, dict[str, Any]] = {}
            for s in self._streams.values():
                idle_s = round(now - s.last_seen, 3)
                a = actors.setdefault(
                    s.actor_id,
                    {
                        "sessions": 0,
                        "batches": 0,
                        "records": 0,
                        "bytes": 0,
                        "param_version": -1,
                        "idle_s": idle_s,
                    },
                )
                a["sessions"] += 1
                a["batches"] += s.batches
                a["records"] += s.records
                a["bytes"] += s.bytes
                a["idle_s"] = min(a["idle_s"], idle_s)
                if s.batches:
                    a["param_version"] = max(a["param_version"], s.param_version)
            if current_param_version is not None:
                for a in actors.values():
                    a["param_lag"] = current_param_version - a["param_version"] if a["param_version"] >= 0 else None
            return {
                "records_in": self._counters["records_in"],
                "batches_in": self._counters["batches_in"],
                "bytes_in": self._counters["bytes_in"],
                "duplicates_dropped": self._counters["duplicates_dropped"],
                "out_of_order": self._counters["out_of_order"],
                "acks_out": self._counters["acks_out"],
                "rejected": dict(self._rejected),
                "rejected_total": sum(self._rejected.values()),
                "queue_batches": len(self._queue),
                "queue_records": self._queue_records,
                "queue_bytes": self._queue_bytes,
                "credits": self._credits,
                "streams": len(self._streams),
                "connections": self._counters["connections"],
                "disconnections": self._counters["disconnections"],
                "actors": actors,
            }

    def close(self) -> None:
        """Stops taking batches, flushes pending acks (up to `linger_s`), joins the I/O thread."""
        with self._nonempty:
            if self._closed:
                return
            self._closed = True  # from here get() hands out nothing, so every delivery gets acked
            self._nonempty.notify_all()
        self._io.stop(timeout=self._config.linger_s + 10 * self._config.poll_interval_s + 5.0)

    def __enter__(self) -> TransitionServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------
    # I/O thread

    def _open_sockets(self, io: IoThread) -> list[zmq.Socket]:
        cfg = self._config
        if self._keys is not None:
            io.serve_zap([self._keys.client_public])
        router = io.socket(zmq.ROUTER)
        configure_socket(
            router,
            timeout_s=cfg.socket_timeout_s,
            heartbeat_s=cfg.heartbeat_s,
            linger_s=cfg.linger_s,
            max_message_bytes=cfg.max_message_bytes + wire.MAX_HEADER_BYTES,
        )
        make_curve_server(router, self._keys)
        self._monitor = io.monitor(router, _MONITOR_EVENTS)
        bind(router, cfg.bind, cfg.transitions_port, "transitions_port")
        self._port = bound_port(router)
        self._router = router
        return [router, self._monitor]

    def _turn(self, events: dict) -> None:
        if self._monitor in events:
            self._on_monitor(self._monitor)
        if self._router in events:
            for _ in range(_MAX_MESSAGES_PER_POLL):
                try:
                    frames = self._router.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._on_message_safely(self._router, frames)
        self._send_due_acks(self._router)
        self._reject_log.maybe_summarize()

    def _on_io_failure(self, exc: Exception) -> None:
        with self._nonempty:
            self._closed = True
            self._nonempty.notify_all()

    def _on_monitor(self, monitor: zmq.Socket) -> None:
        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)["event"]
            except zmq.Again:
                return
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._count("connections")
            elif event == zmq.EVENT_DISCONNECTED:
                self._count("disconnections")
            elif event & (
                zmq.EVENT_HANDSHAKE_FAILED_AUTH
                | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            ):
                reason = "unauthenticated" if self._keys is not None else "handshake_failed"
                self._reject(reason, f"handshake failed ({zmq.Event(event).name})")

    def _on_message_safely(self, router: zmq.Socket, frames: list[zmq.Frame]) -> None:
        try:
            self._on_message(router, frames)
        except wire.WireError as exc:
            self._reject(exc.reason, exc.detail)
        except Exception as exc:  # never let input kill the learner; this is our bug, so log it fully
            with self._lock:
                self._rejected["internal_error"] += 1
            logger.exception("TransitionServer: error while handling a message (%s)", exc)

    def _on_message(self, router: zmq.Socket, frames: list[zmq.Frame]) -> None:
        routing_id = frames[0].bytes
        body = frames[1:]
        if not body:
            raise wire.WireError("malformed", "empty message")
        wire.reject_req_envelope(body)
        header = wire.unpack_header(body[0].buffer)
        try:
            wire.check_version(header, local="this learner", remote="the peer")
        except wire.ProtocolMismatch as exc:
            self._reject("version", str(exc))  # counted before the peer hears of it
            self._reply(
                router,
                routing_id,
                {"type": "refused", "reason": str(exc), "server_version": wire.PROTOCOL_VERSION},
            )
            return
        kind = wire.get_type(header)
        if kind == "batch":
            self._on_batch(router, routing_id, header, body)
        elif kind == "ping":
            self._on_ping(router, routing_id, header)
        elif kind == "stats":
            self._reply(router, routing_id, {"type": "stats", "stats": self.stats()})
        else:
            raise wire.WireError("bad_header", f"unknown message type {kind!r}")

    def _on_ping(self, router: zmq.Socket, routing_id: bytes, header: dict[str, Any]) -> None:
        actor_id = wire.get_str(header, "actor")
        session = wire.get_int(header, "session")
        base = wire.get_int(header, "base")
        tx = wire.get_int(header, "tx")
        with self._lock:
            stream = self._stream_for(actor_id, session, base, routing_id)
        if stream is None:
            self._refuse_stream(router, routing_id, session, -1)
            return
        self._ack_later(stream, tx)

    def _on_batch(self, router: zmq.Socket, routing_id: bytes, header: dict[str, Any], body: list[zmq.Frame]) -> None:
        cfg = self._config
        fields = wire.parse_batch_fields(header)  # unidentifiable junk: no reply
        try:
            data_frames = body[1:]
            total = sum(len(f) for f in data_frames)
            if len(data_frames) > wire.MAX_ARRAYS or total > cfg.max_message_bytes:
                raise wire.WireError(
                    "oversized",
                    f"{len(data_frames)} frames, {total} bytes > max_message_bytes={cfg.max_message_bytes}",
                )
            specs = wire.parse_specs(header, fields.n)
            arrays = wire.decode_arrays(specs, [f.buffer for f in data_frames])
        except wire.WireError as exc:
            # The sender identified itself: tell it why, so an honest actor can report the error.
            self._reject(exc.reason, exc.detail)
            self._reply(router, routing_id, _rejection(fields.session, fields.seq, exc.reason, exc.detail))
            return
        with self._nonempty:
            stream = self._stream_for(fields.actor_id, fields.session, fields.base, routing_id)
            if stream is None:
                outcome = "too_many_actors"
            elif stream.refused is not None:
                outcome = "refused"
            elif fields.seq < stream.next_seq:
                outcome = "duplicate"
                self._counters["duplicates_dropped"] += 1
            elif fields.seq > stream.next_seq:
                outcome = "out_of_order"  # a predecessor was lost; the actor resends from next_seq
                self._counters["out_of_order"] += 1
            elif stream.unacked >= cfg.max_credits_per_actor:
                outcome = "over_credit"
            else:
                outcome = "accepted"
                batch = TransitionBatch(
                    BatchHeader(
                        actor_id=fields.actor_id,
                        session=fields.session,
                        seq=fields.seq,
                        index=fields.index,
                        dropped_before=fields.dropped_before,
                        param_version=fields.param_version,
                        num_records=fields.n,
                        nbytes=total,
                        received_at=time.time(),
                    ),
                    arrays,
                )
                self._queue.append(_Queued(stream, fields.seq, batch))
                stream.next_seq += 1
                stream.unacked += 1
                stream.batches += 1
                stream.records += fields.n
                stream.bytes += total
                stream.param_version = fields.param_version
                self._queue_records += fields.n
                self._queue_bytes += total
                self._counters["batches_in"] += 1
                self._counters["records_in"] += fields.n
                self._counters["bytes_in"] += total
                self._nonempty.notify()
        if stream is None:
            self._refuse_stream(router, routing_id, fields.session, fields.seq)
            return
        if outcome == "refused":
            reason, detail = stream.refused
            self._count_rejected(reason)  # logged once by whoever refused the stream
            self._reply(router, routing_id, _rejection(fields.session, fields.seq, reason, detail))
            return
        self._ack_later(stream, fields.tx)
        if outcome == "over_credit":
            self._reject(
                "over_credit",
                f"actor {fields.actor_id!r} exceeded {cfg.max_credits_per_actor} unacknowledged batches",
            )

    def _stream_for(self, actor_id: str, session: int, base: int, routing_id: bytes) -> _Stream | None:
        """Finds or creates a stream (caller holds the lock). None when max_actors is reached."""
        key = (actor_id, session)
        stream = self._streams.get(key)
        now = time.monotonic()
        if stream is None:
            if len(self._streams) >= self._config.max_actors and not self._forget_idle_stream(now):
                return None
            stream = self._streams[key] = _Stream(actor_id, session, base)
        # The actor vouches that every seq below `base` was delivered (maybe by an earlier learner).
        if base > stream.delivered:
            stream.delivered = base
        if base > stream.next_seq:
            stream.next_seq = base
        stream.routing_id = routing_id
        stream.last_seen = now
        return stream

    def _forget_idle_stream(self, now: float) -> bool:
        idle = [
            (s.last_seen, key)
            for key, s in self._streams.items()
            if s.unacked == 0 and now - s.last_seen >= self._config.stream_forget_s
        ]
        if not idle:
            return False
        del self._streams[min(idle)[1]]
        return True

    def _refuse_stream(self, router: zmq.Socket, routing_id: bytes, session: int, seq: int) -> None:
        detail = f"the learner already tracks max_actors={self._config.max_actors} actor streams"
        self._reject("too_many_actors", detail)
        self._reply(router, routing_id, _rejection(session, seq, "too_many_actors", detail))

    def _ack_later(self, stream: _Stream, tx: int) -> None:
        """One ack per stream per turn of the I/O loop answers every message of that turn."""
        with self._lock:
            stream.ack_tx = max(stream.ack_tx, tx)
            self._ack_due.add((stream.actor_id, stream.session))

    def _send_due_acks(self, router: zmq.Socket) -> None:
        acks = []
        with self._lock:
            if self._credit_broadcast:
                due = list(self._streams.values())
                self._credit_broadcast = False
            else:
                due = [self._streams[k] for k in self._ack_due if k in self._streams]
            self._ack_due.clear()
            for stream in due:
                if stream.routing_id is None:
                    continue
                ack = {
                    "type": "ack",
                    "session": stream.session,
                    "incarnation": self._incarnation,
                    "received": stream.next_seq,
                    "delivered": stream.delivered,
                    "credits": self._credits,
                    # The newest message handled since the last ack (-1: none, e.g. a delivery or
                    # a credit change): the actor checks its older messages against `received`.
                    "tx": stream.ack_tx,
                }
                stream.ack_tx = -1
                acks.append((stream.routing_id, ack))
            self._counters["acks_out"] += len(acks)
            acks.extend(self._replies_due)
            self._replies_due.clear()
        for routing_id, ack in acks:
            self._reply(router, routing_id, ack)

    def _reply(self, router: zmq.Socket, routing_id: bytes, message: dict[str, Any]) -> None:
        message = {"v": wire.PROTOCOL_VERSION, **message}
        try:
            # ROUTER drops messages to unknown or full peers without blocking; acks are cumulative.
            router.send_multipart([routing_id, wire.pack(message)], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            logger.debug("TransitionServer: reply dropped (%s)", exc)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] += n

    def _reject(self, reason: str, detail: str) -> None:
        self._count_rejected(reason)
        self._reject_log.note(reason, detail)

    def _count_rejected(self, reason: str) -> None:
        with self._lock:
            self._rejected[reason] += 1


def _rejection(session: int, seq: int, reason: str, detail: str) -> dict[str, Any]:
    """The reply that tells an actor why its batch was refused (its client stops with this error)."""
    return {"type": "rejected", "session": session, "seq": seq, "reason": reason, "detail": detail[:2000]}
