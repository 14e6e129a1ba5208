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
from typing import Any

import zmq

from serl_gs.transport import wire
from serl_gs.transport._io_thread import IoThread
from serl_gs.transport._ratelog import RateLimitedLog, WindowLimit
from serl_gs.transport._sockets import (
    CONNECTION_EVENTS,
    HANDSHAKE_FAILED,
    bind,
    bound_port,
    configure_socket,
    monitor_events,
)
from serl_gs.transport.auth import load_curve_keys, make_curve_server
from serl_gs.transport.batch_queue import BatchHeader, BatchQueue, TransitionBatch
from serl_gs.transport.config import LearnerTransportConfig
from serl_gs.transport.streams import StreamPosition, StreamTable

logger = logging.getLogger(__name__)

_MAX_MESSAGES_PER_POLL = 256  # then send acks and look at the stop flag again
_STATS_REPLIES_PER_S = 20  # a stats reply costs a walk over every stream: a flood of requests must not


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
        self._queue = BatchQueue()
        self._table = StreamTable(
            max_actors=config.max_actors,
            max_credits_per_actor=config.max_credits_per_actor,
            stream_forget_s=config.stream_forget_s,
            stream_evict_idle_s=config.stream_evict_idle_s,
            resume_positions=resume_positions,
            now=time.monotonic(),
        )
        self._credits = config.credits_per_actor
        self._counters = collections.Counter()
        self._rejected = dict.fromkeys(wire.REJECT_REASONS, 0)
        self._replies_due: list[tuple[bytes, str, dict[str, Any]]] = []  # sent by the I/O thread, with the acks
        self._stats_replies = WindowLimit(_STATS_REPLIES_PER_S)
        self._last_expiry = time.monotonic()
        self._closed = False
        self._port = 0
        self._reject_log = RateLimitedLog(logger, "TransitionServer", config.reject_log_interval_s)
        self._io = IoThread(
            "transition-server",
            open_sockets=self._open_sockets,
            turn=self._turn,
            poll_interval_s=config.poll_interval_s,
            linger_s=config.linger_s,
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
            wake = ack and self._table.acknowledge(item.stream, item.seq)
        if wake:
            self._io.wake()
        return item.batch

    def ack(self, header: BatchHeader) -> None:
        """Acknowledges a batch taken with get(ack=False), and every earlier one of its stream."""
        if not isinstance(header, BatchHeader):
            raise ValueError(f"ack() takes a BatchHeader (batch.header), got {type(header).__name__}")
        with self._lock:
            stream = self._table.streams.get((header.actor_id, header.session))
            if stream is None or header.seq >= stream.next_seq:
                raise ValueError(f"ack() of a batch this server never delivered: {header.actor_id} seq {header.seq}")
            wake = self._table.acknowledge(stream, header.seq)
        if wake:
            self._io.wake()

    def refuse(self, header: BatchHeader, reason: str, detail: str) -> None:
        """Refuses a batch taken with get(ack=False) that the learner cannot use (e.g. another task's records).

        The batch is acknowledged (its actor will not resend it) and counted under `reason`; its actor hears
        `reason: detail` and stops with that error. The rest of its stream is refused too, counted the same,
        without being queued: those still queued are dropped now, later ones as they arrive. Logging the refusal
        is the caller's (e.g. once per actor), so a refused stream's batches are only counted here.
        """
        if not isinstance(header, BatchHeader):
            raise ValueError(f"refuse() takes a BatchHeader (batch.header), got {type(header).__name__}")
        if reason not in self._rejected:
            raise ValueError(f"reason must be one of {list(self._rejected)}, got {reason!r}")
        with self._lock:
            stream = self._table.streams.get((header.actor_id, header.session))
            if stream is None or header.seq >= stream.next_seq:
                raise ValueError(f"refuse() of a batch this server never delivered: {header.actor_id} seq {header.seq}")
            self._table.refuse(stream, reason, detail)
            last, dropped = self._queue.drop_stream(stream)
            self._rejected[reason] += 1 + dropped
            self._table.acknowledge(stream, max(last, header.seq))
            if stream.routing_id is not None:
                fields = {"session": header.session, "seq": header.seq, "reason": reason, "detail": detail[:2000]}
                self._replies_due.append((stream.routing_id, "rejected", fields))
        self._io.wake()

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
            self._table.credit_broadcast = self._table.credit_broadcast or changed
        self._io.wake()

    def positions(self) -> list[StreamPosition]:
        """Per-stream acknowledged positions: checkpoint them with the replay they describe."""
        with self._lock:
            return self._table.positions()

    def stats(self, current_param_version: int | None = None) -> dict[str, Any]:
        """Counters for logging. With `current_param_version`, each actor gets its `param_lag`."""
        now = time.monotonic()
        with self._lock:
            actors = self._table.actor_stats(now, current_param_version)
            counted = ("records_in", "batches_in", "bytes_in", "duplicates_dropped", "out_of_order", "acks_out")
            return {
                **{name: self._counters[name] for name in counted},
                "rejected": dict(self._rejected),
                "rejected_total": sum(self._rejected.values()),
                "queue_batches": len(self._queue),
                "queue_records": self._queue.records,
                "queue_bytes": self._queue.bytes,
                "credits": self._credits,
                "streams": len(self._table.streams),
                "streams_evicted": self._table.evicted,
                "pings_unknown": self._counters["pings_unknown"],  # answered from the ping alone, nothing kept
                "streams_expired": self._table.expired,
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
        self._io.stop()

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
        self._monitor = io.monitor(router, CONNECTION_EVENTS)
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
        now = time.monotonic()
        if now - self._last_expiry >= 1.0:
            with self._lock:
                self._table.expire(now)
            self._last_expiry = now

    def _on_io_failure(self, exc: Exception) -> None:
        with self._nonempty:
            self._closed = True
            self._nonempty.notify_all()

    def _on_monitor(self, monitor: zmq.Socket) -> None:
        for event in monitor_events(monitor):
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._count("connections")
            elif event == zmq.EVENT_DISCONNECTED:
                self._count("disconnections")
            elif event & HANDSHAKE_FAILED:
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
            self._reply(router, routing_id, "refused", reason=str(exc), server_version=wire.PROTOCOL_VERSION)
            return
        kind = wire.get_type(header)
        if kind == "batch":
            self._on_batch(router, routing_id, header, body)
        elif kind == "ping":
            self._on_ping(router, routing_id, header)
        elif kind == "stats":
            if not self._stats_replies.allow(time.monotonic()):
                raise wire.WireError("rate_limited", f"more than {_STATS_REPLIES_PER_S} stats requests per second")
            self._reply(router, routing_id, "stats", stats=self.stats())
        else:
            raise wire.WireError("bad_header", f"unknown message type {kind!r}")

    def _on_ping(self, router: zmq.Socket, routing_id: bytes, header: dict[str, Any]) -> None:
        actor_id = wire.get_str(header, "actor")
        session = wire.get_int(header, "session")
        base = wire.get_int(header, "base")
        tx = wire.get_int(header, "tx")
        with self._lock:
            stream = self._table.ping(actor_id, session, base, tx, routing_id, time.monotonic())
            credits, incarnation = self._credits, self._incarnation
            self._counters["pings_unknown"] += stream is None
        if stream is None:  # a stream the learner does not track: answered, and nothing kept
            self._reply(router, routing_id, "ack", **StreamTable.stateless_ack(session, base, tx, credits, incarnation))

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
            self._reject_batch(router, routing_id, fields.session, fields.seq, exc.reason, exc.detail)
            return
        with self._nonempty:
            f, now = fields, time.monotonic()
            outcome, stream = self._table.offer(
                f.actor_id, f.session, f.seq, f.base, f.tx, routing_id, now,
                num_records=f.n, nbytes=total, param_version=f.param_version,
            )  # fmt: skip
            if outcome == "refused":
                self._rejected[stream.refused[0]] += 1  # logged once, by whoever refused the stream
            elif outcome in ("duplicate", "out_of_order"):
                self._counters["duplicates_dropped" if outcome == "duplicate" else "out_of_order"] += 1
            elif outcome == "accepted":
                batch_header = BatchHeader(
                    f.actor_id, f.session, f.seq, f.index, f.dropped_before, f.param_version, f.n, total, time.time(),
                    f.part,
                )
                self._queue.append(stream, TransitionBatch(batch_header, arrays))
                self._counters["batches_in"] += 1
                self._counters["records_in"] += fields.n
                self._counters["bytes_in"] += total
                self._nonempty.notify()
        if outcome == "refused":
            reason, detail = stream.refused
            detail = detail[:2000]
            self._reply(router, routing_id, "rejected", session=f.session, seq=f.seq, reason=reason, detail=detail)
        elif outcome == "too_many_actors":
            self._refuse_stream(router, routing_id, fields.session, fields.seq)
        elif outcome == "over_credit":
            self._reject(
                "over_credit",
                f"actor {fields.actor_id!r} exceeded {cfg.max_credits_per_actor} unacknowledged batches",
            )

    def _refuse_stream(self, router: zmq.Socket, routing_id: bytes, session: int, seq: int) -> None:
        detail = f"the learner already tracks max_actors={self._config.max_actors} actor streams"
        self._reject_batch(router, routing_id, session, seq, "too_many_actors", detail)

    def _reject_batch(
        self, router: zmq.Socket, routing_id: bytes, session: int, seq: int, reason: str, detail: str
    ) -> None:
        """Counts a rejection and tells the actor, which raises BatchRejected naming the reason."""
        self._reject(reason, detail)
        self._reply(router, routing_id, "rejected", session=session, seq=seq, reason=reason, detail=detail)

    def _send_due_acks(self, router: zmq.Socket) -> None:
        with self._lock:
            acks = self._table.due_acks(self._credits, self._incarnation)
            self._counters["acks_out"] += len(acks)
            replies, self._replies_due = self._replies_due, []
        for routing_id, ack in acks:
            self._reply(router, routing_id, "ack", **ack)
        for routing_id, kind, fields in replies:
            self._reply(router, routing_id, kind, **fields)

    def _reply(self, router: zmq.Socket, routing_id: bytes, kind: str, **fields: Any) -> None:
        try:
            # ROUTER drops messages to unknown or full peers without blocking; acks are cumulative.
            router.send_multipart([routing_id, wire.pack_message(kind, **fields)], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            logger.debug("TransitionServer: reply dropped (%s)", exc)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] += n

    def _reject(self, reason: str, detail: str) -> None:
        with self._lock:
            self._rejected[reason] += 1
        self._reject_log.note(reason, detail)
