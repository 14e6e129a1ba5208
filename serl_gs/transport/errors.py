"""Errors the transport raises to its users (bad arguments raise ValueError instead)."""


class TransportError(Exception):
    """A transport node cannot go on: the peer refused us, or we were closed."""


class ProtocolMismatch(TransportError):
    """The peer speaks another transport protocol version; the message names both versions."""


class AddressInUse(TransportError):
    """A port the learner must bind is taken (another learner, or any other program): names it and its field."""

    def __init__(self, host: str, port: int, field: str) -> None:
        super().__init__(f"port {port} ({field}) on {host} is already in use")
        self.host, self.port, self.field = host, port, field


class BatchRejected(TransportError):
    """The learner refused a batch this actor sent (too big, too many actors, another task's records, ...).

    `reason` is the learner's counter name (`wire.REJECT_REASONS`), `detail` its explanation."""

    def __init__(self, message: str, reason: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.detail = detail
