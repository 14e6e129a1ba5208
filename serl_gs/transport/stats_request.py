"""Ask a running learner for its transport counters (a small request/reply on the transitions port).

For dashboards and for actors that want to see the learner's queue depth or their own lag.
"""

from __future__ import annotations

import time
from typing import Any

import zmq

from serl_gs.transport import wire
from serl_gs.transport._sockets import configure_socket, connect
from serl_gs.transport.auth import load_curve_keys, make_curve_client
from serl_gs.transport.config import ActorTransportConfig
from serl_gs.transport.errors import ProtocolMismatch


def fetch_learner_stats(config: ActorTransportConfig, timeout_s: float = 5.0) -> dict[str, Any]:
    """The learner's `TransitionServer.stats()`; raises TimeoutError if it does not answer in time."""
    if not isinstance(config, ActorTransportConfig):
        raise ValueError(f"config must be an ActorTransportConfig, got {type(config).__name__}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    context = zmq.Context(io_threads=1)
    sock = context.socket(zmq.DEALER)
    try:
        configure_socket(
            sock, timeout_s=timeout_s, heartbeat_s=config.heartbeat_s, linger_s=0, max_message_bytes=64 << 20
        )
        make_curve_client(sock, load_curve_keys(config.auth))
        connect(sock, config.host, config.transitions_port)
        sock.send(wire.pack_message("stats"))  # queued until connected
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            if not sock.poll(int(remaining * 1000) + 1):
                break
            header = wire.unpack_header(sock.recv())
            wire.check_version(header, local="this client", remote="the learner")  # raises ProtocolMismatch
            if header.get("type") == "refused":
                raise ProtocolMismatch(str(header.get("reason")))
            if header.get("type") == "stats" and isinstance(header.get("stats"), dict):
                return header["stats"]
        raise TimeoutError(
            f"the learner at {config.host}:{config.transitions_port} did not answer in {timeout_s} s"
        )
    finally:
        sock.close(linger=0)
        context.term()
