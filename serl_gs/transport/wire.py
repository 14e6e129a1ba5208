"""The wire format: a small versioned msgpack header, then raw array frames. No pickle anywhere.

Transition channel (actor DEALER -> learner ROUTER), one multipart message per batch:

    frame 0: msgpack map {"v": PROTOCOL_VERSION, "type": "batch", "actor", "session", "seq", "base",
             "tx", "index", "dropped_before", "param_version", "n", "arrays": [[name, dtype, shape], ...],
             optional "part": [index, count]}
    frame k: the raw little-endian, C-contiguous bytes of array k-1 (shape[0] == n for every array)

plus small header-only messages: "ping" and "stats" (actor -> learner), "ack", "rejected", "refused"
and "stats" (learner -> actor).

Parameter channel (PUB/SUB and the snapshot ROUTER/DEALER), one single-frame message, because ZeroMQ's
CONFLATE (latest-only) cannot hold multipart messages:

    [u32 little-endian header length][msgpack header][payload: flax.serialization bytes]

Versioning: a new field may join a message within a protocol version only if it is optional and a peer that
ignores it still does the right thing; anything else needs a new PROTOCOL_VERSION (peers refuse other versions
with a ProtocolMismatch naming both). "part" is such a field: an actor step larger than `max_message_bytes`
goes out as several batches split along the env axis (serl_gs.nodes.adder), each a complete batch on its own;
"part" says which piece of the step it is, for the learner's counters, and a learner that ignores it still
inserts every piece correctly.

Every decoder here treats its input as hostile: it bounds sizes before parsing, accepts only the
documented types, and raises `WireError(reason, detail)`; the reason is the counter name.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from serl_gs.transport.errors import ProtocolMismatch

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
MAX_ARRAYS = 64
MAX_NDIM = 8
MAX_NAME_CHARS = 200
MAX_RECORDS = 1 << 24
MAX_PARTS = 1 << 16  # batches one actor step may be split into (the "part" field)
REQUIRED_ARRAYS = ("env_index",)  # the replay pairs records by (actor, session, env_index)
_INT63 = (1 << 63) - 1

# Dtypes a record may carry, by numpy name; always little-endian on the wire.
DTYPES: dict[str, np.dtype] = {
    name: np.dtype(name).newbyteorder("<")
    for name in (
        "bool",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "float16",
        "float32",
        "float64",
    )
}

# (kind, itemsize) -> name: numpy's dtype.name is slow Python code, and send() checks every array.
_NAME_OF: dict[tuple[str, int], str] = {(dt.kind, dt.itemsize): name for name, dt in DTYPES.items()}

# Reasons a message is rejected; each is a counter on the receiving side.
REJECT_REASONS = (
    "oversized",  # bigger than max_message_bytes / MAX_HEADER_BYTES, or too many frames
    "pickle",  # a pickle stream (never unpickled: counted and dropped)
    "lz4_frame",  # an LZ4 frame, e.g. agentlace's lz4(pickle(dict))
    "compressed",  # a zlib stream
    "malformed",  # not a msgpack map
    "bad_header",  # msgpack, but fields missing, of the wrong type, or out of range
    "version",  # another protocol version
    "bad_arrays",  # array specs that do not match the frames, or unknown dtypes
    "over_credit",  # an actor exceeded max_credits_per_actor unacknowledged batches
    "too_many_actors",  # max_actors streams already tracked, none of which may give its place yet
    "rate_limited",  # more requests of a kind (e.g. stats) than the learner answers per second
    "schema",  # well-formed, but records of another schema (another task, missing fields): refused by the learner
    "bad_records",  # records of the right schema that the replay cannot take (NaN, env_index out of range)
    "unauthenticated",  # CURVE handshake refused (wrong or missing key)
    "handshake_failed",  # ZMTP handshake failed (not a ZeroMQ peer, or a protocol mismatch)
    "internal_error",  # a bug on our side while handling a message; logged with traceback
)


class WireError(Exception):
    """A message that does not follow the protocol. `reason` is one of REJECT_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ArraySpec:
    name: str
    dtype: str  # a key of DTYPES
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPES[self.dtype].itemsize

    def to_wire(self) -> list:
        return [self.name, self.dtype, list(self.shape)]


def pack(header: Mapping[str, Any]) -> bytes:
    return msgpack.packb(header, use_bin_type=True)


def make_header(kind: str, **fields: Any) -> dict[str, Any]:
    """A message header of this protocol version: {"v": PROTOCOL_VERSION, "type": kind, **fields}."""
    return {"v": PROTOCOL_VERSION, "type": kind, **fields}


def pack_message(kind: str, **fields: Any) -> bytes:
    """A header-only message (ping, ack, rejected, refused, stats), packed."""
    return pack(make_header(kind, **fields))


# ---------------------------------------------------------------------------------------------------
# Actor side: validate what the user hands to send().


def describe_arrays(
    arrays: Mapping[str, np.ndarray], *, copy: bool
) -> tuple[int, list[ArraySpec], list[np.ndarray]]:
    """Checks a record batch and returns (n, specs, contiguous little-endian arrays in spec order).

    The batch refers to the arrays until the learner confirms it, so without `copy` (arrays already in
    wire layout): read-only arrays (e.g. from jax.device_get) are sent as they are; arrays that own
    their memory are sent as they are and marked read-only, so a later write fails loudly instead of
    changing data in flight; writeable views are copied (their owner could still write).
    Raises ValueError naming the first bad key, dtype or shape.
    """
    if not isinstance(arrays, Mapping):
        raise ValueError(f"arrays must be a mapping of name -> np.ndarray, got {type(arrays).__name__}")
    if not 1 <= len(arrays) <= MAX_ARRAYS:
        raise ValueError(f"a batch needs 1 to {MAX_ARRAYS} arrays, got {len(arrays)}")
    missing = [k for k in REQUIRED_ARRAYS if k not in arrays]
    if missing:
        raise ValueError(f"a batch must contain {list(REQUIRED_ARRAYS)}; missing {missing}")
    first = next(iter(arrays.values()))
    n = first.shape[0] if isinstance(first, np.ndarray) and first.ndim >= 1 else -1
    specs: list[ArraySpec] = []
    buffers: list[np.ndarray] = []
    for name, value in arrays.items():
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS or not name.isprintable():
            raise ValueError(f"array names must be printable strings of 1-{MAX_NAME_CHARS} chars: {name!r}")
        if not isinstance(value, np.ndarray):
            raise ValueError(
                f"arrays[{name!r}] must be a numpy array (use np.asarray / jax.device_get), "
                f"got {type(value).__name__}"
            )
        dtype_name = _NAME_OF.get((value.dtype.kind, value.dtype.itemsize))
        if dtype_name is None:
            raise ValueError(f"arrays[{name!r}] has dtype {value.dtype}; allowed: {sorted(DTYPES)}")
        if not 1 <= value.ndim <= MAX_NDIM:
            raise ValueError(
                f"arrays[{name!r}] must have 1-{MAX_NDIM} dims [n, ...], got shape {value.shape}"
            )
        if value.shape[0] != n:
            raise ValueError(f"arrays[{name!r}] has leading dim {value.shape[0]}, others have {n}")
        if name == "env_index" and (value.ndim != 1 or value.dtype.kind not in "iu"):
            raise ValueError(
                f"arrays['env_index'] must be an integer vector [n], got {value.dtype} {value.shape}"
            )
        wire_dtype = DTYPES[dtype_name]
        converted = np.ascontiguousarray(value, dtype=wire_dtype)
        if np.may_share_memory(converted, value):  # no conversion happened: still the caller's memory
            if copy or (value.flags.writeable and value.base is not None):
                converted = converted.copy()
            elif value.flags.writeable:
                value.flags.writeable = False
        specs.append(ArraySpec(name, dtype_name, tuple(int(d) for d in value.shape)))
        buffers.append(converted)
    if not 1 <= n <= MAX_RECORDS:
        raise ValueError(f"a batch must hold 1 to {MAX_RECORDS} records, got n={n}")
    return n, specs, buffers


# ---------------------------------------------------------------------------------------------------
# Receiving side: hostile input.


def _classify_junk(data: bytes | memoryview) -> str:
    head = bytes(data[:4])
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if head == b"\x04\x22\x4d\x18":
        return "lz4_frame"
    if len(head) >= 2 and head[0] == 0x78 and head[1] in (0x01, 0x5E, 0x9C, 0xDA):
        return "compressed"
    return "malformed"


def reject_req_envelope(frames: Sequence[Any]) -> None:
    """Our peers (DEALER sockets) never send an empty first frame; a REQ socket, e.g. agentlace's client, always
    does. Raises WireError classifying what follows the delimiter (pickle, lz4_frame, ...), so such traffic is
    counted as what it is, not as `malformed`."""
    if len(frames) >= 2 and memoryview(frames[0]).nbytes == 0:
        raise WireError(
            _classify_junk(memoryview(frames[1])),
            "a REQ envelope (empty first frame), e.g. from an agentlace client: not a serl_gs peer",
        )


def unpack_header(data: bytes | memoryview) -> dict[str, Any]:
    """Parses a msgpack header map; anything else raises WireError with a precise reason."""
    if len(data) > MAX_HEADER_BYTES:
        raise WireError("oversized", f"header of {len(data)} bytes > {MAX_HEADER_BYTES}")
    try:
        header = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_str_len=MAX_HEADER_BYTES,
            max_bin_len=0,
            max_array_len=4 * MAX_ARRAYS,
            max_map_len=64,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several types on junk; all mean the same here
        raise WireError(_classify_junk(data), f"not a msgpack header ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise WireError(_classify_junk(data), "header is not a msgpack map")
    return header


def check_version(header: Mapping[str, Any], *, local: str, remote: str) -> None:
    """Raises ProtocolMismatch naming both versions when the peer speaks another protocol."""
    version = header.get("v")
    if type(version) is not int:
        raise WireError("bad_header", f"missing protocol version 'v' (got {version!r})")
    if version != PROTOCOL_VERSION:
        raise ProtocolMismatch(
            f"{remote} speaks transport protocol version {version}, {local} speaks version "
            f"{PROTOCOL_VERSION}; run the same serl_gs version on both"
        )


def get_int(header: Mapping[str, Any], key: str, low: int = 0, high: int = _INT63) -> int:
    value = header.get(key)
    if type(value) is not int or not low <= value <= high:  # bool is not an int here
        raise WireError("bad_header", f"{key!r} must be an int in [{low}, {high}], got {value!r}")
    return value


def get_str(header: Mapping[str, Any], key: str, max_chars: int = 128) -> str:
    value = header.get(key)
    if not isinstance(value, str) or not 1 <= len(value) <= max_chars or not value.isprintable():
        raise WireError("bad_header", f"{key!r} must be a printable string of 1-{max_chars} chars")
    return value


def get_type(header: Mapping[str, Any]) -> str:
    kind = header.get("type")
    if not isinstance(kind, str) or len(kind) > 32:
        raise WireError("bad_header", f"'type' must be a short string, got {kind!r}")
    return kind


def parse_specs(header: Mapping[str, Any], n: int) -> list[ArraySpec]:
    raw = header.get("arrays")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_ARRAYS:
        raise WireError("bad_arrays", f"'arrays' must list 1-{MAX_ARRAYS} specs")
    specs: list[ArraySpec] = []
    names: set[str] = set()
    for item in raw:
        if not (isinstance(item, list) and len(item) == 3):
            raise WireError("bad_arrays", "each array spec must be [name, dtype, shape]")
        name, dtype, shape = item
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS or not name.isprintable():
            raise WireError("bad_arrays", "array name must be a short printable string")
        if name in names:
            raise WireError("bad_arrays", f"array {name!r} appears twice")
        names.add(name)
        if dtype not in DTYPES:
            raise WireError("bad_arrays", f"array {name!r} has unknown dtype {dtype!r}")
        if (
            not isinstance(shape, list)
            or not 1 <= len(shape) <= MAX_NDIM
            or any(type(d) is not int or not 0 <= d < (1 << 31) for d in shape)
        ):
            raise WireError("bad_arrays", f"array {name!r} has a bad shape {shape!r}")
        if shape[0] != n:
            raise WireError("bad_arrays", f"array {name!r} has leading dim {shape[0]} != n={n}")
        specs.append(ArraySpec(name, dtype, tuple(shape)))
    for required in REQUIRED_ARRAYS:
        if required not in names:
            raise WireError("bad_arrays", f"batch lacks required array {required!r}")
    env_index = next(s for s in specs if s.name == "env_index")
    if len(env_index.shape) != 1 or DTYPES[env_index.dtype].kind not in "iu":
        raise WireError("bad_arrays", "env_index must be an integer vector [n]")
    return specs


def decode_arrays(specs: Sequence[ArraySpec], frames: Sequence[Any]) -> dict[str, np.ndarray]:
    """Zero-copy, read-only views of the frames, checked against the specs."""
    if len(frames) != len(specs):
        raise WireError("bad_arrays", f"{len(specs)} array specs but {len(frames)} data frames")
    arrays: dict[str, np.ndarray] = {}
    for spec, frame in zip(specs, frames, strict=True):
        buf = memoryview(frame)
        if buf.nbytes != spec.nbytes:
            raise WireError("bad_arrays", f"array {spec.name!r}: {buf.nbytes} bytes, spec says {spec.nbytes}")
        view = np.frombuffer(buf, dtype=DTYPES[spec.dtype]).reshape(spec.shape)
        view.flags.writeable = False
        arrays[spec.name] = view
    return arrays


@dataclass(frozen=True)
class BatchFields:
    """The header fields of a transition batch, validated (the array specs are parsed separately)."""

    actor_id: str
    session: int
    seq: int  # transport sequence number, contiguous per (actor_id, session)
    base: int  # the actor's lowest unconfirmed seq: everything below was delivered already
    tx: int  # transmission counter, echoed in the ack (lets the actor spot lost messages)
    index: int  # the send() call number, before any drop_oldest drops
    dropped_before: int  # batches the actor dropped (drop_oldest) right before this one
    param_version: int
    n: int
    part: tuple[int, int] = (0, 1)  # (index, count): this batch's piece of one actor step; (0, 1) = the whole step


def parse_part(header: Mapping[str, Any]) -> tuple[int, int]:
    """The optional "part" field as (index, count), (0, 1) when absent; WireError("bad_header") if malformed."""
    part = header.get("part")
    if part is None:
        return (0, 1)
    if (
        not isinstance(part, list)
        or len(part) != 2
        or any(type(x) is not int for x in part)
        or not 0 <= part[0] < part[1] <= MAX_PARTS
    ):
        raise WireError(
            "bad_header", f"'part' must be [index, count] with 0 <= index < count <= {MAX_PARTS}, got {part!r}"
        )
    return (part[0], part[1])


def parse_batch_fields(header: Mapping[str, Any]) -> BatchFields:
    seq = get_int(header, "seq")
    base = get_int(header, "base")
    if base > seq:
        raise WireError("bad_header", f"base {base} > seq {seq}")
    return BatchFields(
        actor_id=get_str(header, "actor"),
        session=get_int(header, "session"),
        seq=seq,
        base=base,
        tx=get_int(header, "tx"),
        index=get_int(header, "index"),
        dropped_before=get_int(header, "dropped_before"),
        param_version=get_int(header, "param_version", -(1 << 62), 1 << 62),
        n=get_int(header, "n", 1, MAX_RECORDS),
        part=parse_part(header),
    )


# ---------------------------------------------------------------------------------------------------
# Parameter channel: one frame, [u32 header length][header][payload].

_LEN = struct.Struct("<I")


def encode_param_message(header: Mapping[str, Any], payload: bytes | memoryview = b"") -> bytes:
    head = pack(header)
    return b"".join((_LEN.pack(len(head)), head, payload))


def decode_param_message(data: bytes | memoryview, max_bytes: int) -> tuple[dict[str, Any], memoryview]:
    """Returns (header, payload view); the header's version is NOT checked here (see check_version)."""
    buf = memoryview(data)
    if buf.nbytes > max_bytes + MAX_HEADER_BYTES + _LEN.size:
        raise WireError("oversized", f"parameter message of {buf.nbytes} bytes > limit {max_bytes}")
    if buf.nbytes < _LEN.size:
        raise WireError(_classify_junk(buf), "shorter than its length prefix")
    (head_len,) = _LEN.unpack(buf[: _LEN.size])
    if head_len > MAX_HEADER_BYTES or _LEN.size + head_len > buf.nbytes:
        raise WireError(_classify_junk(buf), f"header length {head_len} does not fit")
    header = unpack_header(buf[_LEN.size : _LEN.size + head_len])
    return header, buf[_LEN.size + head_len :]
