"""CURVE authentication from one shared secret file.

The learner's and the actors' CURVE key pairs are derived from the file's bytes (BLAKE2b with a
per-role personalisation), so a cluster needs one file copied to every node and nothing else. The
learner's sockets are CURVE servers with a ZAP handler that admits only the derived actor key; an
actor's sockets are CURVE clients that need the derived learner key. Without the file a peer can
neither finish the handshake nor read anything: CURVE encrypts every frame.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass

import zmq
from zmq.utils import z85

from serl_gs.transport.config import AuthConfig

logger = logging.getLogger(__name__)

MIN_SECRET_BYTES = 16
ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # fixed by the ZAP spec (RFC 27), one per zmq.Context


@dataclass(frozen=True)
class CurveKeys:
    """Z85-encoded CURVE keys (40 ASCII bytes each)."""

    server_public: bytes
    server_secret: bytes
    client_public: bytes
    client_secret: bytes


def _derive(secret: bytes, role: bytes) -> tuple[bytes, bytes]:
    raw = hashlib.blake2b(secret, digest_size=32, person=b"serl_gs/" + role).digest()
    secret_z85 = z85.encode(raw)
    return zmq.curve_public(secret_z85), secret_z85


def load_curve_keys(auth: AuthConfig) -> CurveKeys | None:
    """The derived keys, or None when authentication is off. Bad files raise ValueError."""
    if auth.secret_file is None:
        return None
    if not zmq.has("curve"):
        raise ValueError("auth.secret_file is set but this libzmq was built without CURVE support")
    path = os.path.expanduser(auth.secret_file)
    try:
        with open(path, "rb") as f:
            secret = f.read().strip()
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ValueError(f"auth secret file {auth.secret_file!r} cannot be read: {exc}") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(
            f"auth secret file {auth.secret_file!r} holds {len(secret)} bytes; need >= {MIN_SECRET_BYTES}"
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("auth secret file %s is readable by other users (chmod 600 it)", path)
    server_public, server_secret = _derive(secret, b"learner")
    client_public, client_secret = _derive(secret, b"actor")
    return CurveKeys(server_public, server_secret, client_public, client_secret)


def write_secret_file(path: str) -> None:
    """Writes 32 random bytes (hex) to a new file readable only by its owner; never overwrites."""
    fd = os.open(os.path.expanduser(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")


def make_curve_server(sock: zmq.Socket, keys: CurveKeys | None) -> None:
    """Call before bind(). No-op when keys is None."""
    if keys is None:
        return
    sock.curve_server = True
    sock.curve_secretkey = keys.server_secret
    sock.curve_publickey = keys.server_public


def make_curve_client(sock: zmq.Socket, keys: CurveKeys | None) -> None:
    """Call before connect(). No-op when keys is None."""
    if keys is None:
        return
    sock.curve_serverkey = keys.server_public
    sock.curve_publickey = keys.client_public
    sock.curve_secretkey = keys.client_secret


class ZapHandler:
    """Answers libzmq's ZAP requests for one context: admits CURVE clients whose key is allowed.

    Owned by a node's I/O thread, which polls `socket` and calls `handle()`; must be created before
    the CURVE server sockets of the same context bind.
    """

    def __init__(self, context: zmq.Context, allowed_client_keys: Iterable[bytes]) -> None:
        self._allowed = {z85.decode(k) for k in allowed_client_keys}
        self.socket = context.socket(zmq.REP)
        self.socket.linger = 0
        self.socket.bind(ZAP_ENDPOINT)
        self.denied = 0

    def handle(self) -> None:
        while True:
            try:
                request = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            request_id = request[1] if len(request) > 1 else b""
            mechanism = request[5] if len(request) > 5 else b""
            key = request[6] if len(request) > 6 else b""
            ok = len(request) >= 7 and request[0] == b"1.0" and mechanism == b"CURVE" and key in self._allowed
            if not ok:
                self.denied += 1
            status = (b"200", b"OK") if ok else (b"400", b"unknown key")
            self.socket.send_multipart([b"1.0", request_id, *status, b"actor" if ok else b"", b""])

    def close(self) -> None:
        self.socket.close(linger=0)
