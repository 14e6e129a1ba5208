"""The actor's end of the parameter broadcast: `ParamSubscriber` (the learner's end: `serl_gs.transport.params`).

A SUB socket with CONFLATE (set before connecting: at most one message queued, so a slow actor skips
versions) plus a snapshot request (DEALER) for the current parameters when it (re)connects, because PUB/SUB
cannot replay to a newcomer. No thread: `poll()` and `wait()` do the (non-blocking) work.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

import zmq

from serl_gs.transport import wire
from serl_gs.transport._ratelog import RateLimitedLog
from serl_gs.transport._sockets import HANDSHAKE_FAILED, close_all, configure_socket, connect, monitor_events
from serl_gs.transport.auth import load_curve_keys, make_curve_client
from serl_gs.transport.config import ActorTransportConfig
from serl_gs.transport.errors import ProtocolMismatch, TransportError
from serl_gs.transport.params import ParamUpdate

logger = logging.getLogger(__name__)


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
            self._sub = self._socket(zmq.SUB, keys, max_bytes=config.max_param_bytes + 2 * wire.MAX_HEADER_BYTES)
            self._sub.setsockopt(zmq.CONFLATE, 1)  # before connect(): keep only the newest message
            self._sub.setsockopt(zmq.SUBSCRIBE, b"")
            self._monitor = self._sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | HANDSHAKE_FAILED)
            self._monitor.linger = 0
            self._sockets.append(self._monitor)
            connect(self._sub, config.host, config.params_port)
            self._snapshot = self._socket(
                zmq.DEALER, keys, max_bytes=config.max_param_bytes + 2 * wire.MAX_HEADER_BYTES
            )
            self._snapshot.setsockopt(zmq.IMMEDIATE, 1)
            connect(self._snapshot, config.host, config.params_snapshot_port)
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
        for event in monitor_events(self._monitor):
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
        request = wire.make_header(
            "get_params",
            have_version=-1 if have is None else have.version,
            have_incarnation=-1 if have is None else have.incarnation,
        )
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
