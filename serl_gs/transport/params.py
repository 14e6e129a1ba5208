"""Parameter broadcast, latest-only: `ParamPublisher` (learner, here) and `ParamSubscriber` (actor, in
`serl_gs.transport.subscriber`).

Updates go out on PUB/SUB with ZMQ_CONFLATE on both ends, set before connecting, so each
subscriber's queue holds one message at most: a slow actor skips versions instead of receiving a
backlog of stale ones. The learner's end is an XPUB that admits subscriptions itself (XPUB_MANUAL): only
"everything" is taken, so a peer cannot grow its subscription table with junk topics.
PUB/SUB cannot replay to a newcomer, so the publisher also answers a small
snapshot request (ROUTER) with the current parameters: an actor that joins late, or reconnects
after a learner restart, has them at once (the ZeroMQ guide's "clone" pattern).

Payloads are opaque bytes; the nodes publish `serl_gs.agents.payload.pack_policy(...)` (params plus what
rebuilds the networks, msgpack via flax.serialization, no pickle).
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

from serl_gs.transport import wire
from serl_gs.transport._io_thread import IoThread
from serl_gs.transport._ratelog import RateLimitedLog, WindowLimit
from serl_gs.transport._sockets import HANDSHAKE_FAILED, bind, bound_port, configure_socket, monitor_events
from serl_gs.transport.auth import load_curve_keys, make_curve_server
from serl_gs.transport.config import LearnerTransportConfig
from serl_gs.transport.errors import ProtocolMismatch, TransportError

logger = logging.getLogger(__name__)

_MAX_REQUEST_BYTES = 4096
# Full snapshots answered per second: each is the whole policy (MBs with an image encoder), so a flood of requests
# must not turn the learner into a bandwidth amplifier. Over it, requests are dropped (counted: rate_limited); an
# actor asks again after socket_timeout_s and gets every new version on the broadcast meanwhile.
_SNAPSHOTS_PER_S = 100


@dataclass(frozen=True)
class ParamUpdate:
    version: int
    data: bytes  # flax.serialization bytes
    incarnation: int  # the publishing learner process; changes when the learner restarts


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
        self._snapshot_limit = WindowLimit(_SNAPSHOTS_PER_S)
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
            linger_s=config.linger_s,
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
                "params_bytes must be bytes (e.g. flax.serialization.to_bytes(params)), "
                f"got {type(params_bytes).__name__}"
            )
        size = memoryview(params_bytes).nbytes
        if size > self._config.max_param_bytes:
            raise ValueError(f"params of {size} bytes exceed max_param_bytes={self._config.max_param_bytes}")
        if type(version) is not int or not 0 <= version < (1 << 62):
            raise ValueError(f"version must be a non-negative int, got {version!r}")
        header = wire.make_header("params", version=version, incarnation=self._incarnation, nbytes=size)
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
        self._io.stop()

    def __enter__(self) -> ParamPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_sockets(self, io: IoThread) -> list[zmq.Socket]:
        cfg = self._config
        if self._keys is not None:
            io.serve_zap([self._keys.client_public])
        self._pub = pub = io.socket(zmq.XPUB)
        configure_socket(
            pub, timeout_s=cfg.socket_timeout_s, heartbeat_s=cfg.heartbeat_s, linger_s=0, max_message_bytes=64
        )  # what arrives here is subscriptions: a byte and a topic
        pub.setsockopt(zmq.CONFLATE, 1)  # per subscriber: keep only the newest unsent message
        pub.setsockopt(zmq.XPUB_MANUAL, 1)  # subscriptions are ours to admit (_admit_subscriptions)
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
        self._monitors = [io.monitor(pub, HANDSHAKE_FAILED), io.monitor(snapshot, HANDSHAKE_FAILED)]
        return [pub, snapshot, *self._monitors]

    def _turn(self, events: dict) -> None:
        for monitor in self._monitors:
            if monitor in events:
                self._on_monitor(monitor)
        if self._pub in events:
            self._admit_subscriptions(self._pub)
        if self._snapshot in events:
            self._serve_snapshots(self._snapshot)
        self._broadcast_latest(self._pub)
        self._reject_log.maybe_summarize()

    def _on_monitor(self, monitor: zmq.Socket) -> None:
        for event in monitor_events(monitor):
            if event & HANDSHAKE_FAILED:
                reason = "unauthenticated" if self._keys is not None else "handshake_failed"
                with self._lock:
                    self._rejected[reason] += 1
                self._reject_log.note(reason, f"handshake failed ({zmq.Event(event).name})")

    def _admit_subscriptions(self, pub: zmq.Socket) -> None:
        """Subscribing to everything (what our subscribers do) is taken; any other topic is refused and counted.
        Each setsockopt applies to the subscriber whose message was read last, so it follows each recv."""
        for _ in range(256):
            try:
                message = pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if message in (b"\x01", b"\x00"):
                pub.setsockopt(zmq.SUBSCRIBE if message == b"\x01" else zmq.UNSUBSCRIBE, b"")
                continue
            with self._lock:
                self._rejected["bad_header"] += 1
            self._reject_log.note("bad_header", f"a subscription to a topic ({message[:16]!r}): only b'' is served")

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
            reply = wire.make_header("refused", reason=str(exc))
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
            if not self._snapshot_limit.allow(time.monotonic()):
                raise wire.WireError("rate_limited", f"more than {_SNAPSHOTS_PER_S} parameter snapshots per second")
            reply_message = latest[1]
        else:
            no_news = wire.make_header("no_newer_params", incarnation=self._incarnation)
            reply_message = wire.encode_param_message(no_news)
        snapshot.send_multipart([routing_id, reply_message], zmq.NOBLOCK, copy=False)
        with self._lock:
            self._counters["snapshot_replies"] += 1
