"""Errors the transport raises to its users (bad arguments raise ValueError instead)."""


class TransportError(Exception):
    """A transport node cannot go on: the peer refused us, or we were closed."""


class ProtocolMismatch(TransportError):
    """The peer speaks another transport protocol version; the message names both versions."""


class BatchRejected(TransportError):
    """The learner refused a batch this actor sent (too big, too many actors, ...); says why."""
