"""Socket plumbing the transport's ends share: options, endpoints, monitor events, a wake-up pipe."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

import zmq
from zmq.utils.monitor import recv_monitor_message

from serl_gs.transport.errors import AddressInUse

HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
# What a transport end watches on its main socket: peers arriving, refused, leaving.
CONNECTION_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | HANDSHAKE_FAILED | zmq.EVENT_DISCONNECTED


def configure_socket(
    sock: zmq.Socket,
    *,
    timeout_s: float,
    heartbeat_s: float,
    linger_s: float,
    max_message_bytes: int | None = None,
    reconnect_s: float | None = None,
    reconnect_max_s: float | None = None,
) -> None:
    """Timeouts on every socket, ZMTP heartbeats so dead peers are noticed, a bounded linger."""
    sock.setsockopt(zmq.LINGER, int(linger_s * 1000))
    sock.setsockopt(zmq.SNDTIMEO, int(timeout_s * 1000))
    sock.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
    sock.setsockopt(zmq.HEARTBEAT_IVL, int(heartbeat_s * 1000))
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(3 * heartbeat_s * 1000))
    sock.setsockopt(zmq.HEARTBEAT_TTL, int(3 * heartbeat_s * 1000))
    sock.setsockopt(zmq.HANDSHAKE_IVL, int(timeout_s * 1000))
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    if max_message_bytes is not None:
        sock.setsockopt(zmq.MAXMSGSIZE, int(max_message_bytes))
    if reconnect_s is not None:
        sock.setsockopt(zmq.RECONNECT_IVL, int(reconnect_s * 1000))
    if reconnect_max_s is not None:
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, int(reconnect_max_s * 1000))


def bound_port(sock: zmq.Socket) -> int:
    """The TCP port a socket is bound to (useful after binding port 0)."""
    endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    return int(endpoint.rsplit(":", 1)[1])


class WakePipe:
    """Lets user threads wake an I/O thread out of zmq.Poller.poll(); writes are thread-safe."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)

    def fileno(self) -> int:
        return self._read_fd

    def wake(self) -> None:
        # A full pipe means a wake-up is pending anyway; a closed one means we are shutting down.
        with contextlib.suppress(OSError):
            os.write(self._write_fd, b"\0")

    def drain(self) -> None:
        try:
            while os.read(self._read_fd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def _tcp(host: str, port: int | str, sock: zmq.Socket) -> str:
    if ":" in host:  # an IPv6 literal: bracketed, and the socket must speak IPv6
        sock.setsockopt(zmq.IPV6, 1)
        host = f"[{host}]"
    return f"tcp://{host}:{port}"


def endpoint(host: str, port: int, sock: zmq.Socket) -> str:
    """A tcp:// endpoint to bind; port 0 binds a free port, an IPv6 literal turns IPv6 on for the socket."""
    return _tcp(host, port if port else "*", sock)


def connect(sock: zmq.Socket, host: str, port: int) -> None:
    """Connects to a host name or address (IPv6 literals too) and port."""
    sock.connect(_tcp(host, port, sock))


def monitor_events(monitor: zmq.Socket) -> Iterator[int]:
    """The events a monitor socket holds now, oldest first; never waits."""
    while True:
        try:
            yield recv_monitor_message(monitor, zmq.NOBLOCK)["event"]
        except zmq.Again:
            return


def bind(sock: zmq.Socket, host: str, port: int, field: str) -> None:
    """Binds `sock` like `endpoint` says; a taken port raises AddressInUse naming it and its config `field`."""
    try:
        sock.bind(endpoint(host, port, sock))
    except zmq.ZMQError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(host, port, field) from None
        raise


def close_all(context: zmq.Context, sockets: list[zmq.Socket], *others: object) -> None:
    """Closes sockets (each with its own linger), then objects with close(), then the context."""
    for sock in sockets:
        sock.close()
    for other in others:
        if other is not None:
            other.close()
    context.term()
