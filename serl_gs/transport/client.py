"""The actor's end of the transition stream: `TransitionClient`.

`send()` validates a batch and puts it in a pending buffer (flow control: credits, the away buffer, the
overflow policy); a background I/O thread, which owns one DEALER socket, moves pending batches into the
go-back-N send window (`serl_gs.transport.send_window`: sequence numbers, acks, resends) as the learner's
credits allow, and sends what the window says.
"""

from __future__ import annotations

import atexit
import collections
import logging
import random
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import zmq

from serl_gs.transport import wire
from serl_gs.transport._io_thread import IoThread
from serl_gs.transport._ratelog import RateLimitedLog
from serl_gs.transport._sockets import CONNECTION_EVENTS, configure_socket, connect, monitor_events
from serl_gs.transport.auth import load_curve_keys, make_curve_client
from serl_gs.transport.config import ActorTransportConfig
from serl_gs.transport.errors import BatchRejected, ProtocolMismatch, TransportError
from serl_gs.transport.send_window import Outgoing, PendingBuffer, SendWindow

logger = logging.getLogger(__name__)

_MAX_REPLY_BYTES = 64 << 20  # acks are tiny; a stats reply from a big cluster is the largest
# Counters `stats()` reports. Records are what send() was given (one per env per step); "sent" counts first
# transmissions, "confirmed" what the learner acknowledged storing; refused_full: times the learner had no room.
_STATS_COUNTERS = (
    "batches_sent", "records_sent", "bytes_sent", "batches_confirmed", "records_confirmed", "resent_batches",
    "dropped_batches", "dropped_records", "learner_restarts", "handshake_failures", "bad_replies", "refused_full",
    "send_wait_s",  # seconds send() spent blocked: no credit from the learner, or the buffer full while it is away
)  # fmt: skip


class TransitionClient:
    """Streams record batches to the learner from a background thread. Use as a context manager.

    `send(arrays, param_version)` returns as soon as the batch is queued; see
    `ActorTransportConfig` for the flow-control policy when the learner falls behind.
    """

    def __init__(self, config: ActorTransportConfig) -> None:
        if not isinstance(config, ActorTransportConfig):
            raise ValueError(f"config must be an ActorTransportConfig, got {type(config).__name__}")
        self._config = config
        self._keys = load_curve_keys(config.auth)
        self._session = secrets.randbits(63)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # pending shrank, a batch was confirmed, or an error
        self._pending = PendingBuffer(config.max_pending_batches, config.away_buffer_bytes)
        self._unconfirmed = 0  # batches handed to the I/O thread and not yet confirmed delivered
        self._error: TransportError | None = None
        self._closed = False
        self._counters = collections.Counter()
        # Owned by the I/O thread.
        self._window = SendWindow()
        self._credits = 0  # nothing goes out before the learner has answered a ping
        self._connected = False
        self._disconnected_since: float | None = time.time()  # wall clock; None while connected
        self._ping_due = True
        self._last_ping = 0.0
        self._last_reply = 0.0
        self._hold_until = 0.0  # the learner had no room for this stream: nothing goes out before this
        self._full_retry_s = config.full_retry_s
        self._reply_log = RateLimitedLog(logger, f"TransitionClient[{config.actor_id}]", 10.0)
        self._io = IoThread(
            f"transition-client-{config.actor_id}",
            open_sockets=self._open_sockets,
            turn=self._turn,
            poll_interval_s=config.poll_interval_s,
            linger_s=config.linger_s,
            on_failure=lambda exc: self._fail(TransportError(f"transport I/O thread failed: {exc!r}")),
        )
        atexit.register(self.close)  # a finished actor flushes (up to linger_s) and exits

    # ------------------------------------------------------------------------------------------
    # Public API (any thread)

    @property
    def actor_id(self) -> str:
        return self._config.actor_id

    @property
    def session(self) -> int:
        return self._session

    @property
    def max_message_bytes(self) -> int:
        """The largest batch (all array bytes together) `send` takes; larger steps are split by the adder."""
        return self._config.max_message_bytes

    def send(
        self, arrays: Mapping[str, np.ndarray], param_version: int, *, part: tuple[int, int] | None = None
    ) -> None:
        """Queues one batch of records: `arrays[name]` is [n, ...] for every name, with "env_index" [n].

        `part=(index, count)` marks the batch as one piece of an actor step split along the env axis (wire "part").

        Blocks only as the flow-control policy says (overflow="block": until the learner takes data,
        at most block_timeout_s, then TimeoutError). Raises the transport's error if it has one.
        """
        cfg = self._config
        if type(param_version) is not int or not -(1 << 62) <= param_version <= (1 << 62):
            raise ValueError(f"param_version must be an int, got {param_version!r}")
        n, specs, buffers = wire.describe_arrays(arrays, copy=cfg.copy_on_send)
        nbytes = sum(b.nbytes for b in buffers)
        if nbytes > cfg.max_message_bytes:
            raise ValueError(
                f"batch of {nbytes} bytes exceeds max_message_bytes={cfg.max_message_bytes}; send fewer "
                "envs per batch or raise the limit on both ends"
            )
        if part is not None and (
            not isinstance(part, tuple) or len(part) != 2 or not 0 <= part[0] < part[1] <= wire.MAX_PARTS
        ):
            raise ValueError(f"part must be (index, count) with 0 <= index < count <= {wire.MAX_PARTS}, got {part!r}")
        out = Outgoing(n, [s.to_wire() for s in specs], buffers, nbytes, param_version)
        out.part = part
        deadline = None if cfg.block_timeout_s is None else time.monotonic() + cfg.block_timeout_s
        with self._changed:
            self._raise_if_unusable()
            waited_from = None
            while self._pending.full(nbytes, self._connected):
                if cfg.overflow == "drop_oldest":
                    dropped = self._pending.drop_oldest(out)
                    self._counters["dropped_batches"] += 1
                    self._counters["dropped_records"] += dropped.n
                    continue
                now = time.monotonic()
                if waited_from is None:
                    waited_from = now
                remaining = None if deadline is None else deadline - now
                if remaining is not None and remaining <= 0:
                    self._counters["send_wait_s"] += now - waited_from
                    raise TimeoutError(
                        f"send() waited block_timeout_s={cfg.block_timeout_s} s: the learner has not taken "
                        f"data ({len(self._pending)} batches pending, credits={self._credits})"
                    )
                self._changed.wait(cfg.poll_interval_s if remaining is None else min(remaining, cfg.poll_interval_s))
                self._raise_if_unusable()
            if waited_from is not None:
                self._counters["send_wait_s"] += time.monotonic() - waited_from
            wake = self._pending.append(out)  # a buffer with batches means the I/O thread has work already
        if wake:
            self._io.wake()

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until the learner has taken every batch sent so far; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while self._pending or self._unconfirmed:
                if self._error is not None or self._closed:
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                wait = self._config.poll_interval_s
                self._changed.wait(wait if remaining is None else min(wait, remaining))
            return True

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "actor_id": self._config.actor_id,
                "session": self._session,
                **{name: self._counters[name] for name in _STATS_COUNTERS},
                "pending_batches": len(self._pending),
                "pending_bytes": self._pending.bytes,
                "unconfirmed_batches": self._unconfirmed,
                "credits": self._credits,
                "connected": self._connected,
                "disconnected_since": self._disconnected_since,
                "error": None if self._error is None else str(self._error),
            }

    def close(self, timeout: float | None = None) -> None:
        """Gives the learner up to `timeout` (default linger_s) to take what is queued, then stops."""
        with self._lock:
            if self._closed:
                return
        atexit.unregister(self.close)
        flushed = self.flush(self._config.linger_s if timeout is None else timeout)
        with self._changed:
            self._closed = True
            lost = len(self._pending) + self._unconfirmed
            self._changed.notify_all()
        self._io.stop()
        if not flushed and lost:
            logger.warning(
                "TransitionClient[%s]: closed with %d batches the learner had not taken",
                self._config.actor_id,
                lost,
            )

    def __enter__(self) -> TransitionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _raise_if_unusable(self) -> None:
        """Caller holds the lock."""
        if self._error is not None:
            raise self._error
        if self._closed:
            raise TransportError(f"TransitionClient[{self._config.actor_id}] is closed")

    # ------------------------------------------------------------------------------------------
    # I/O thread

    def _open_sockets(self, io: IoThread) -> list[zmq.Socket]:
        cfg = self._config
        self._dealer = dealer = io.socket(zmq.DEALER)
        configure_socket(
            dealer,
            timeout_s=cfg.socket_timeout_s,
            heartbeat_s=cfg.heartbeat_s,
            linger_s=cfg.linger_s,
            max_message_bytes=_MAX_REPLY_BYTES,
            reconnect_s=cfg.reconnect_s,
            reconnect_max_s=cfg.reconnect_max_s,
        )
        # IMMEDIATE stays 0: the pipe then survives reconnects, so the learner's last acks before a
        # disconnect are still read (with 1, libzmq drops them and we would resend delivered data).
        make_curve_client(dealer, self._keys)
        self._monitor = io.monitor(dealer, CONNECTION_EVENTS)
        connect(dealer, cfg.host, cfg.transitions_port)
        return [dealer, self._monitor]

    def _turn(self, events: dict) -> None:
        if self._monitor in events:
            self._on_monitor(self._monitor)
        if self._dealer in events:
            self._receive_replies(self._dealer)
        if self._error is not None:
            return
        now = time.monotonic()
        self._check_ack_timeout(now)
        self._maybe_ping(self._dealer, now)
        if now >= self._hold_until:
            self._transmit(self._dealer)

    def _on_monitor(self, monitor: zmq.Socket) -> None:
        for event in monitor_events(monitor):
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._set_connected(True)
                self._ping_due = True  # learn the learner's state (restart? credits?) at once
            elif event == zmq.EVENT_DISCONNECTED:
                self._set_connected(False)
            else:
                with self._lock:
                    self._counters["handshake_failures"] += 1
                self._reply_log.note(
                    "handshake_failed",
                    f"the learner refused the handshake ({zmq.Event(event).name}): check auth.secret_file",
                )

    def _set_connected(self, connected: bool) -> None:
        with self._changed:
            if connected:
                self._disconnected_since = None
            elif self._connected:
                self._disconnected_since = time.time()
            self._connected = connected
            self._changed.notify_all()  # a blocked send() may go on into the away buffer

    def _receive_replies(self, dealer: zmq.Socket) -> None:
        while True:
            try:
                frames = dealer.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self._on_reply(frames)
            except wire.WireError as exc:
                with self._lock:
                    self._counters["bad_replies"] += 1
                self._reply_log.note(exc.reason, exc.detail)

    def _on_reply(self, frames: list[bytes]) -> None:
        if len(frames) != 1:
            raise wire.WireError("malformed", f"reply of {len(frames)} frames")
        header = wire.unpack_header(frames[0])
        try:
            wire.check_version(header, local="this actor", remote="the learner")
        except ProtocolMismatch as exc:
            self._fail(exc)
            return
        self._last_reply = time.monotonic()
        kind = wire.get_type(header)
        if kind == "ack":
            self._on_ack(header)
        elif kind == "rejected":
            if wire.get_int(header, "session") == self._session:
                reason, detail = str(header.get("reason"))[:64], str(header.get("detail"))[:2000]
                if reason == "too_many_actors":
                    self._hold_for_room(detail)
                    return
                message = f"the learner rejected batch seq={header.get('seq')}: {reason}: {detail}"
                self._fail(BatchRejected(message, reason=reason, detail=detail))
        elif kind == "refused":
            self._fail(ProtocolMismatch(str(header.get("reason"))[:500]))
        else:
            raise wire.WireError("bad_header", f"unexpected reply type {kind!r}")

    def _on_ack(self, header: dict[str, Any]) -> None:
        if wire.get_int(header, "session") != self._session:
            return  # meant for an earlier client that had this socket's routing id
        # Every field is checked before the window moves: a malformed ack changes nothing.
        incarnation = wire.get_int(header, "incarnation")
        received = wire.get_int(header, "received")
        delivered = wire.get_int(header, "delivered")
        credits = wire.get_int(header, "credits", 0, 1 << 20)
        tx = wire.get_int(header, "tx", -1)
        outcome = self._window.on_ack(incarnation, received, delivered, tx, time.monotonic())
        if outcome.freed:
            self._full_retry_s = self._config.full_retry_s  # the learner takes our data: room again
        if outcome.learner_restarted:
            logger.info("TransitionClient[%s]: learner restarted; resending unconfirmed batches", self._config.actor_id)
        with self._changed:
            self._counters["learner_restarts"] += outcome.learner_restarted
            self._credits = credits
            if outcome.freed:
                self._unconfirmed -= outcome.freed
                self._counters["batches_confirmed"] += outcome.freed
                self._counters["records_confirmed"] += outcome.freed_records
                self._changed.notify_all()

    def _hold_for_room(self, detail: str) -> None:
        """The learner has no room for this stream yet: keep every batch, try again after a growing delay."""
        now = time.monotonic()
        if now < self._hold_until:
            return  # the other batches in flight were refused too: one backoff step for all of them
        cfg = self._config
        delay = self._full_retry_s * random.uniform(0.75, 1.25)
        self._full_retry_s = min(2 * self._full_retry_s, cfg.full_retry_max_s)
        self._hold_until = now + delay
        self._window.go_back(self._window.base(), now, force=True)  # resent, in order, once the hold ends
        with self._lock:
            self._counters["refused_full"] += 1
        self._reply_log.note(
            "too_many_actors",
            f"the learner at {cfg.host}:{cfg.transitions_port} has no room for this actor yet ({detail}); "
            f"holding its batches and retrying in {delay:.1f} s",
        )

    def _check_ack_timeout(self, now: float) -> None:
        # While disconnected, resending only queues copies; the reconnect ping reconciles.
        if self._connected and self._window.check_timeout(now, self._config.ack_timeout_s):
            self._ping_due = True

    def _maybe_ping(self, dealer: zmq.Socket, now: float) -> None:
        hb = self._config.heartbeat_s
        if not self._connected:
            return  # a ping goes out as soon as the handshake succeeds
        if not (self._ping_due or (now - self._last_ping >= hb and now - self._last_reply >= hb)):
            return
        window = self._window
        ping = wire.pack_message(
            "ping", actor=self._config.actor_id, session=self._session, base=window.base(), tx=window.next_tx
        )
        try:
            dealer.send(ping, zmq.NOBLOCK)
        except zmq.Again:
            return  # not connected yet
        window.ping_sent()
        self._ping_due = False
        self._last_ping = now

    def _transmit(self, dealer: zmq.Socket) -> None:
        window = self._window
        while len(window) < min(self._config.max_in_flight_batches, self._credits):
            with self._changed:
                if not self._pending:
                    break
                out = self._pending.popleft()
                self._unconfirmed += 1
                self._changed.notify_all()
            window.admit(out)
        while (out := window.next_to_send()) is not None:
            if not self._send_batch(dealer, out):
                return  # not connected: retry on the next turn

    def _send_batch(self, dealer: zmq.Socket, out: Outgoing) -> bool:
        header = wire.make_header(
            "batch",
            actor=self._config.actor_id,
            session=self._session,
            seq=out.seq,
            base=self._window.base(),
            tx=self._window.next_tx,
            index=out.index,
            dropped_before=out.dropped_before,
            param_version=out.param_version,
            n=out.n,
            arrays=out.specs,
        )
        if out.part is not None:
            header["part"] = list(out.part)
        try:
            dealer.send_multipart([wire.pack(header), *out.buffers], zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        resend = self._window.sent(out, time.monotonic())
        with self._lock:
            self._counters["batches_sent"] += 1
            self._counters["bytes_sent"] += out.nbytes
            if resend:
                self._counters["resent_batches"] += 1
            else:
                self._counters["records_sent"] += out.n
        return True

    def _fail(self, error: TransportError) -> None:
        with self._changed:
            if self._error is None:
                self._error = error
                logger.error("TransitionClient[%s]: %s", self._config.actor_id, error)
            self._changed.notify_all()
