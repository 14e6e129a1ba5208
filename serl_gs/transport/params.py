"""Parameter broadcast, latest-only: `ParamPublisher` (learner) and `ParamSubscriber` (actor).

Updates go out on PUB/SUB with ZMQ_CONFLATE on both ends, set before connecting, so each
subscriber's queue holds one message at most: a slow actor skips versions instead of receiving a
backlog of stale ones. PUB/SUB cannot replay to a newcomer, so the publisher also answers a small
snapshot request (ROUTER) with the current parameters: an actor that joins late, or reconnects
after a learner restart, has them at once (the ZeroMQ guide's "clone" pattern).

Payloads are `flax.serialization.to_bytes(params)`; `params_to_bytes` / `params_from_bytes` wrap it.
"""

from __future__ import annotations

import collections
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from serl_gs.transport import wire
from serl_gs.transport._io_thread import IoThread
from serl_gs.transport._ratelog import RateLimitedLog
from serl_gs.transport._sockets import bind, bound_port, close_all, configure_socket
from serl_gs.transport.auth import load_curve_keys, make_curve_client, make_curve_server
from serl_gs.transport.config import ActorTransportConfig, LearnerTransportConfig
from serl_gs.transport.errors import ProtocolMismatch, TransportError

logger = logging.getLogger(__name__)

_MAX_REQUEST_BYTES = 4096
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


@dataclass(frozen=True)
class ParamUpdate:
    version: int
    data: bytes  # flax.serialization bytes
    incarnation: int  # the publishing learner process; changes when the learner restarts


def params_to_bytes(params: Any) -> bytes:
    """flax.serialization.to_bytes (msgpack of the pytree's numpy leaves; no pickle)."""
    from flax import serialization  # deferred: importing flax pulls in JAX

    return serialization.to_bytes(params)


def params_from_bytes(template: Any, data: bytes) -> Any:
    """Restores bytes from `params_to_bytes` into the structure of `template`."""
    from flax import serialization

    return serialization.from_bytes(template, data)


# -------------------------------------------------------------------------------------------------
# Learner side


class ParamPublisher:
    """Publishes parameters to every actor. `publish()` never blocks; only the latest version counts."""

    def __init__(self, config: LearnerTransportConfig) -> None:
        if not isinstance(config, LearnerTransportConfig):
            raise ValueError(f"config must be a LearnerTransportConfig, got {type(config).__name__}")
        self._config = config
        self._keys = load_curve_keys(config.auth)
        self._incarnation = secrets.randbits(63)
        self._lock = threading.Lock()
        self._latest: tuple[int, bytes] | None = None  # (version, encoded message)
        self._sent_version: int | None = None
        self._counters = collections.Counter()
        self._rejected = dict.fromkeys(wire.REJECT_REASONS, 0)
        self._reject_log = RateLimitedLog(logger, "ParamPublisher", config.reject_log_interval_s)
        self._closed = False
        self._port = self._snapshot_port = 0
        self._io = IoThread(
            "param-publisher",
            open_sockets=self._open_sockets,
            turn=self._turn,
            poll_interval_s=config.poll_interval_s,
        )

    @property
    def port(self) -> int:
        return self._port

    @property
    def snapshot_port(self) -> int:
        return self._snapshot_port

    @property
    def version(self) -> int | None:
        with self._lock:
            return None if self._latest is None else self._latest[0]

    def publish(self, params_bytes: bytes | bytearray | memoryview, version: int) -> None:
        """Makes `params_bytes` the current parameters; versions must increase."""
        if not isinstance(params_bytes, (bytes, bytearray, memoryview)):
            raise ValueError(
                f"params_bytes must be bytes (use params_to_bytes(params)), got {type(params_bytes).__name__}"
            )
        size = memoryview(params_bytes).nbytes
        if size > self._config.max_param_bytes:
            raise ValueError(f"params of {size} bytes exceed max_param_bytes={self._config.max_param_bytes}")
        if type(version) is not int or not 0 <= version < (1 << 62):
            raise ValueError(f"version must be a non-negative int, got {version!r}")
        header = {
            "v": wire.PROTOCOL_VERSION,
            "type": "params",
            "version": version,
            "incarnation": self._incarnation,
            "nbytes": size,
        }
        message = wire.encode_param_message(header, params_bytes)
        with self._lock:
            if self._closed:
                raise TransportError("ParamPublisher is closed")
            if self._latest is not None and version <= self._latest[0]:
                raise ValueError(f"version must increase: got {version} after {self._latest[0]}")
            self._latest = (version, message)
            self._counters["published"] += 1
        self._io.wake()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "version": None if self._latest is None else self._latest[0],
                "published": self._counters["published"],
                "broadcasts": self._counters["broadcasts"],
                "bytes_broadcast": self._counters["bytes_broadcast"],
                "snapshot_requests": self._counters["snapshot_requests"],
                "snapshot_replies": self._counters["snapshot_replies"],
                "rejected": dict(self._rejected),
                "rejected_total": sum(self._rejected.values()),
            }

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._io.stop(timeout=self._config.linger_s + 10 * self._config.poll_interval_s + 5.0)

    def __enter__(self) -> ParamPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_sockets(self, io: IoThread) -> list[zmq.Socket]:
        cfg = self._config
        if self._keys is not None:
            io.serve_zap([self._keys.client_public])
        self._pub = pub = io.socket(zmq.PUB)
        configure_socket(pub, timeout_s=cfg.socket_timeout_s, heartbeat_s=cfg.heartbeat_s, linger_s=0)
        pub.setsockopt(zmq.CONFLATE, 1)  # per subscriber: keep only the newest unsent message
        make_curve_server(pub, self._keys)
        bind(pub, cfg.bind, cfg.params_port, "params_port")
        self._snapshot = snapshot = io.socket(zmq.ROUTER)
        configure_socket(
            snapshot,
            timeout_s=cfg.socket_timeout_s,
            heartbeat_s=cfg.heartbeat_s,
            linger_s=0,
            max_message_bytes=_MAX_REQUEST_BYTES,
        )
        make_curve_server(snapshot, self._keys)
        bind(snapshot, cfg.bind, cfg.params_snapshot_port, "params_snapshot_port")
        self._port, self._snapshot_port = bound_port(pub), bound_port(snapshot)
        # Failed handshakes (a wrong CURVE key, a peer that does not speak ZMTP) are counted like the server's.
        self._monitors = [io.monitor(pub, _HANDSHAKE_FAILED), io.monitor(snapshot, _HANDSHAKE_FAILED)]
        return [snapshot, *self._monitors]

    def _turn(self, events: dict) -> None:
        for monitor in self._monitors:
            if monitor in events:
                self._on_monitor(monitor)
        if self._snapshot in events:
            self._serve_snapshots(self._snapshot)
        self._broadcast_latest(self._pub)
        self._reject_log.maybe_summarize()

    def _on_monitor(self, monitor: zmq.Socket) -> None:
        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)["event"]
            except zmq.Again:
                return
            if event & _HANDSHAKE_FAILED:
                reason = "unauthenticated" if self._keys is not None else "handshake_failed"
                with self._lock:
                    self._rejected[reason] += 1
                self._reject_log.note(reason, f"handshake failed ({zmq.Event(event).name})")

    def _broadcast_latest(self, pub: zmq.Socket) -> None:
        with self._lock:
            latest = self._latest
        if latest is None or latest[0] == self._sent_version:
            return
        version, message = latest
        pub.send(message, zmq.NOBLOCK, copy=False)  # PUB never blocks: slow subscribers conflate
        self._sent_version = version
        with self._lock:
            self._counters["broadcasts"] += 1
            self._counters["bytes_broadcast"] += len(message)

    def _serve_snapshots(self, snapshot: zmq.Socket) -> None:
        for _ in range(256):
            try:
                frames = snapshot.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self._serve_one(snapshot, frames)
            except wire.WireError as exc:
                with self._lock:
                    self._rejected[exc.reason] += 1
                self._reject_log.note(exc.reason, exc.detail)
            except Exception as exc:  # never let input kill the learner
                with self._lock:
                    self._rejected["internal_error"] += 1
                logger.exception("ParamPublisher: error while handling a request (%s)", exc)

    def _serve_one(self, snapshot: zmq.Socket, frames: list[bytes]) -> None:
        wire.reject_req_envelope(frames[1:])
        if len(frames) != 2:
            raise wire.WireError("malformed", f"snapshot request of {len(frames) - 1} frames")
        routing_id, request = frames
        header, payload = wire.decode_param_message(request, _MAX_REQUEST_BYTES)
        try:
            wire.check_version(header, local="this learner", remote="the actor")
        except ProtocolMismatch as exc:
            reply = {"v": wire.PROTOCOL_VERSION, "type": "refused", "reason": str(exc)}
            snapshot.send_multipart([routing_id, wire.encode_param_message(reply)], zmq.NOBLOCK)
            raise wire.WireError("version", str(exc)) from None
        if wire.get_type(header) != "get_params" or payload.nbytes:
            raise wire.WireError("bad_header", "expected a 'get_params' request without payload")
        have_version = wire.get_int(header, "have_version", -1)
        have_incarnation = wire.get_int(header, "have_incarnation", -1)
        with self._lock:
            self._counters["snapshot_requests"] += 1
            latest = self._latest
        if latest is not None and (have_incarnation != self._incarnation or have_version < latest[0]):
            reply_message = latest[1]
        else:
            no_news = {
                "v": wire.PROTOCOL_VERSION,
                "type": "no_newer_params",
                "incarnation": self._incarnation,
            }
            reply_message = wire.encode_param_message(no_news)
        snapshot.send_multipart([routing_id, reply_message], zmq.NOBLOCK, copy=False)
        with self._lock:
            self._counters["snapshot_replies"] += 1


# -------------------------------------------------------------------------------------------------
# Actor side


class ParamSubscriber:
    """Receives the learner's parameters. No thread: `poll()` / `wait()` do the (non-blocking) work,
    so a slow actor's queue holds one message at most. Thread-safe (calls are serialized)."""

    def __init__(self, config: ActorTransportConfig) -> None:
        if not isinstance(config, ActorTransportConfig):
            raise ValueError(f"config must be an ActorTransportConfig, got {type(config).__name__}")
        self._config = config
        keys = load_curve_keys(config.auth)
        self._lock = threading.Lock()
        self._counters = collections.Counter()
        self._newest: ParamUpdate | None = None
        self._returned: tuple[int, int] | None = None  # (incarnation, version) last handed out
        self._error: TransportError | None = None
        self._snapshot_due_at: list[float] = [0.0]  # request now; more are added on (re)connect
        self._awaiting_snapshot_since = 0.0  # 0: no snapshot request unanswered
        self._closed = False
        self._log = RateLimitedLog(logger, "ParamSubscriber", 10.0)
        self._context = zmq.Context(io_threads=1)
        self._sockets: list[zmq.Socket] = []
        try:
            host = f"[{config.host}]" if ":" in config.host else config.host
            self._sub = self._socket(zmq.SUB, keys, max_bytes=config.max_param_bytes + 2 * wire.MAX_HEADER_BYTES)
            self._sub.setsockopt(zmq.CONFLATE, 1)  # before connect(): keep only the newest message
            self._sub.setsockopt(zmq.SUBSCRIBE, b"")
            self._monitor = self._sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | _HANDSHAKE_FAILED)
            self._monitor.linger = 0
            self._sockets.append(self._monitor)
            self._sub.connect(f"tcp://{host}:{config.params_port}")
            self._snapshot = self._socket(
                zmq.DEALER, keys, max_bytes=config.max_param_bytes + 2 * wire.MAX_HEADER_BYTES
            )
            self._snapshot.setsockopt(zmq.IMMEDIATE, 1)
            self._snapshot.connect(f"tcp://{host}:{config.params_snapshot_port}")
        except BaseException:
            close_all(self._context, self._sockets)
            raise
        self._poller = zmq.Poller()
        for sock in (self._sub, self._monitor, self._snapshot):
            self._poller.register(sock, zmq.POLLIN)

    def _socket(self, kind: int, keys, *, max_bytes: int) -> zmq.Socket:
        cfg = self._config
        sock = self._context.socket(kind)
        self._sockets.append(sock)
        configure_socket(
            sock,
            timeout_s=cfg.socket_timeout_s,
            heartbeat_s=cfg.heartbeat_s,
            linger_s=0,
            max_message_bytes=max_bytes,
            reconnect_s=cfg.reconnect_s,
            reconnect_max_s=cfg.reconnect_max_s,
        )
        if ":" in cfg.host:
            sock.setsockopt(zmq.IPV6, 1)
        make_curve_client(sock, keys)
        return sock

    @property
    def version(self) -> int | None:
        """The version last returned by poll()/wait(), or None."""
        with self._lock:
            return None if self._returned is None else self._returned[1]

    def poll(self) -> ParamUpdate | None:
        """The newest parameters if newer than the last ones returned, else None. Never blocks."""
        with self._lock:
            self._service(0)
            return self._take()

    def wait(self, timeout: float | None = None) -> ParamUpdate | None:
        """Blocks until parameters newer than the last returned arrive; None after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        step = self._config.poll_interval_s
        with self._lock:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                self._service(int(1000 * (step if remaining is None else max(0.0, min(step, remaining)))))
                update = self._take()
                if update is not None or (remaining is not None and remaining <= 0):
                    return update

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "version": None if self._returned is None else self._returned[1],
                "updates_received": self._counters["updates_received"],
                "snapshots_received": self._counters["snapshots_received"],
                "stale_received": self._counters["stale_received"],
                "bad_messages": self._counters["bad_messages"],
                "handshake_failures": self._counters["handshake_failures"],
                "learner_restarts": self._counters["learner_restarts"],
            }

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._sub.disable_monitor()
            close_all(self._context, self._sockets)

    def __enter__(self) -> ParamSubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take(self) -> ParamUpdate | None:
        newest = self._newest
        if newest is None or self._returned == (newest.incarnation, newest.version):
            return None
        self._returned = (newest.incarnation, newest.version)
        return newest

    def _service(self, timeout_ms: int) -> None:
        """Handles whatever the sockets hold (waiting up to timeout_ms for something)."""
        if self._closed:
            raise TransportError("ParamSubscriber is closed")
        if self._error is not None:
            raise self._error
        self._maybe_request_snapshot()
        events = dict(self._poller.poll(timeout_ms))
        if self._monitor in events:
            self._on_monitor()
        for sock, source in ((self._sub, "updates_received"), (self._snapshot, "snapshots_received")):
            if sock not in events:
                continue
            while True:
                try:
                    message = sock.recv(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._on_message(message.buffer, source)
        if self._error is not None:
            raise self._error
        self._maybe_request_snapshot()

    def _on_monitor(self) -> None:
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)["event"]
            except zmq.Again:
                return
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                # A (re)connected SUB: fetch the current parameters now, and once more a heartbeat
                # later in case a publish raced with our subscription reaching the learner.
                now = time.monotonic()
                self._snapshot_due_at = [now, now + self._config.heartbeat_s]
                self._awaiting_snapshot_since = 0.0  # a request to a previous learner is moot
            else:
                self._counters["handshake_failures"] += 1
                self._log.note("handshake_failed", f"learner refused the handshake ({zmq.Event(event).name})")

    def _maybe_request_snapshot(self) -> None:
        now = time.monotonic()
        retry = bool(self._awaiting_snapshot_since)
        if retry and now - self._awaiting_snapshot_since < self._config.socket_timeout_s:
            return  # a request is out; its reply is on the way
        if not retry and (not self._snapshot_due_at or now < self._snapshot_due_at[0]):
            return
        have = self._newest
        request = {
            "v": wire.PROTOCOL_VERSION,
            "type": "get_params",
            "have_version": -1 if have is None else have.version,
            "have_incarnation": -1 if have is None else have.incarnation,
        }
        try:
            self._snapshot.send(wire.encode_param_message(request), zmq.NOBLOCK)
        except zmq.Again:
            return  # not connected yet
        if not retry:
            self._snapshot_due_at.pop(0)
        self._awaiting_snapshot_since = now

    def _on_message(self, data: memoryview, source: str) -> None:
        try:
            header, payload = wire.decode_param_message(data, self._config.max_param_bytes)
            try:
                wire.check_version(header, local="this actor", remote="the learner")
            except ProtocolMismatch as exc:
                self._error = exc
                return
            kind = wire.get_type(header)
            if kind == "refused":
                self._error = ProtocolMismatch(str(header.get("reason"))[:500])
                return
            if kind == "no_newer_params":
                self._awaiting_snapshot_since = 0.0
                return
            if kind != "params":
                raise wire.WireError("bad_header", f"unexpected message type {kind!r}")
            version = wire.get_int(header, "version")
            incarnation = wire.get_int(header, "incarnation")
            if wire.get_int(header, "nbytes") != payload.nbytes:
                raise wire.WireError("bad_header", f"nbytes={header.get('nbytes')} but {payload.nbytes} payload bytes")
        except wire.WireError as exc:
            self._counters["bad_messages"] += 1
            self._log.note(exc.reason, exc.detail)
            return
        if source == "snapshots_received":
            self._awaiting_snapshot_since = 0.0
        newest = self._newest
        if newest is not None and incarnation == newest.incarnation and version <= newest.version:
            self._counters["stale_received"] += 1
            return
        if newest is not None and incarnation != newest.incarnation:
            self._counters["learner_restarts"] += 1
        self._counters[source] += 1
        self._newest = ParamUpdate(version=version, data=bytes(payload), incarnation=incarnation)
