"""The wire format (serl_gs.transport.wire): pure functions, no sockets."""

from __future__ import annotations

import pickle
import zlib

import msgpack
import numpy as np
import pytest

from serl_gs.transport import wire
from serl_gs.transport.errors import ProtocolMismatch


def record_batch(n: int = 3) -> dict[str, np.ndarray]:
    """The record contract of the actors: one observation and the step that led to it, per env."""
    rng = np.random.default_rng(0)
    return {
        "env_index": np.arange(n, dtype=np.int32),
        "obs/state": rng.standard_normal((n, 7)).astype(np.float32),
        "obs/pixels/front": rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
        "action": rng.standard_normal((n, 4)).astype(np.float32),
        "reward": rng.standard_normal(n).astype(np.float32),
        "terminated": np.array([True, False, False][:n]),
        "truncated": np.zeros(n, bool),
        "is_first": np.ones(n, bool),
    }


def roundtrip(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n, specs, buffers = wire.describe_arrays(arrays, copy=True)
    header = wire.unpack_header(wire.pack({"arrays": [s.to_wire() for s in specs]}))
    parsed = wire.parse_specs(header, n)
    return wire.decode_arrays(parsed, [b.tobytes() for b in buffers])


def test_record_contract_round_trips_exactly():
    arrays = record_batch()
    out = roundtrip(arrays)
    assert list(out) == list(arrays)
    for name, value in arrays.items():
        assert out[name].dtype == value.dtype and out[name].shape == value.shape
        np.testing.assert_array_equal(out[name], value)
        assert not out[name].flags.writeable  # views of the received frames


@pytest.mark.parametrize("dtype", sorted(wire.DTYPES))
def test_every_allowed_dtype_round_trips(dtype):
    values = (np.arange(2 * 3 * 2) % 7).reshape(2, 3, 2).astype(dtype)
    out = roundtrip({"env_index": np.arange(2, dtype=np.int64), "x": values})
    assert out["x"].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out["x"], values)


def test_big_endian_and_strided_inputs_are_sent_little_endian_contiguous():
    big = np.arange(6, dtype=">f4").reshape(3, 2)
    strided = np.arange(12, dtype=np.int16).reshape(3, 4)[:, ::2]
    n, specs, buffers = wire.describe_arrays({"env_index": np.arange(3), "big": big, "s": strided}, copy=False)
    assert buffers[1].dtype.byteorder in "<=" and buffers[2].flags.c_contiguous
    out = roundtrip({"env_index": np.arange(3), "big": big, "s": strided})
    np.testing.assert_array_equal(out["big"], big)
    np.testing.assert_array_equal(out["s"], strided)


def test_without_copy_owned_arrays_are_frozen_and_writeable_views_copied():
    owned = np.zeros((2, 3), np.float32)
    base = np.zeros((4, 3), np.float32)
    view = base[:2]
    frozen = np.zeros(2, np.int32)
    frozen.flags.writeable = False
    _, _, sent = wire.describe_arrays({"env_index": frozen, "owned": owned, "view": view}, copy=False)
    assert np.shares_memory(sent[0], frozen) and np.shares_memory(sent[1], owned)  # zero-copy
    with pytest.raises(ValueError, match="read-only"):
        owned[0, 0] = 1.0  # a write would have changed a batch in flight: it fails instead
    base[:] = 7.0
    assert sent[2].max() == 0.0 and base.flags.writeable  # the view was copied, its owner untouched


def test_copy_on_send_decouples_from_the_callers_buffer():
    state = np.zeros((2, 3), np.float32)
    _, _, copied = wire.describe_arrays({"env_index": np.arange(2), "s": state}, copy=True)
    state[:] = 5.0
    assert copied[1].max() == 0.0 and state.flags.writeable


@pytest.mark.parametrize(
    "arrays, message",
    [
        ([1, 2], "mapping"),
        ({}, "1 to 64 arrays"),
        ({"x": np.zeros(2)}, "env_index"),
        ({"env_index": [0, 1]}, "numpy array"),
        ({"env_index": np.arange(2), "x": np.zeros(2, complex)}, "dtype complex128"),
        ({"env_index": np.arange(2), "x": np.array(["a", "b"], object)}, "dtype object"),
        ({"env_index": np.arange(2), "x": np.zeros(3)}, "leading dim 3"),
        ({"env_index": np.arange(2), "x": np.zeros((), np.float32)}, "dims"),
        ({"env_index": np.zeros(2, np.float32)}, "integer vector"),
        ({"env_index": np.arange(2), "": np.zeros(2)}, "names"),
        ({"env_index": np.zeros(0, np.int32)}, "n=0"),
    ],
)
def test_bad_batches_raise_value_error_naming_the_problem(arrays, message):
    with pytest.raises(ValueError, match=message):
        wire.describe_arrays(arrays, copy=False)


def lz4_frame(payload: bytes) -> bytes:
    """A valid LZ4 frame (stored blocks), as agentlace's lz4.frame.compress would start."""
    descriptor = bytes([0x60, 0x40])  # version 01, independent blocks; 64 KiB max block
    out = bytearray(b"\x04\x22\x4d\x18" + descriptor + bytes([(xxh32(descriptor) >> 8) & 0xFF]))
    for i in range(0, len(payload), 1 << 16):
        block = payload[i : i + (1 << 16)]
        out += (len(block) | 0x80000000).to_bytes(4, "little") + block
    return bytes(out + b"\0\0\0\0")


def xxh32(data: bytes, seed: int = 0) -> int:
    p1, p2, p3, p4, p5, m = 2654435761, 2246822519, 3266489917, 668265263, 374761393, 0xFFFFFFFF

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & m

    i, n = 0, len(data)
    if n >= 16:
        v = [(seed + p1 + p2) & m, (seed + p2) & m, seed & m, (seed - p1) & m]
        while i + 16 <= n:
            for k in range(4):
                lane = int.from_bytes(data[i + 4 * k : i + 4 * k + 4], "little")
                v[k] = rotl((v[k] + lane * p2) & m, 13) * p1 & m
            i += 16
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & m
    else:
        h = (seed + p5) & m
    h = (h + n) & m
    while i + 4 <= n:
        h = rotl((h + int.from_bytes(data[i : i + 4], "little") * p3) & m, 17) * p4 & m
        i += 4
    while i < n:
        h = rotl((h + data[i] * p5) & m, 11) * p1 & m
        i += 1
    h ^= h >> 15
    h = h * p2 & m
    h ^= h >> 13
    h = h * p3 & m
    return h ^ (h >> 16)


def test_xxh32_matches_the_reference_vectors():
    assert xxh32(b"") == 0x02CC5D05
    assert xxh32(b"a") == 0x550D7456
    assert xxh32(b"Nobody inspects the spammish repetition") == 0xE2293B2F


@pytest.mark.parametrize(
    "data, reason",
    [
        (pickle.dumps({"type": "datastore", "payload": [1, 2]}), "pickle"),
        (pickle.dumps({"a": np.zeros(3)}, protocol=5), "pickle"),
        (lz4_frame(pickle.dumps({"type": "datastore", "data": [{"obs": np.zeros(4)}]})), "lz4_frame"),
        (zlib.compress(pickle.dumps({"x": 1})), "compressed"),
        (b"", "malformed"),
        (b"\xff\x00garbage", "malformed"),
        (msgpack.packb([1, 2, 3]), "malformed"),
        (msgpack.packb({"v": 1}) + b"trailing", "malformed"),
        (msgpack.packb({1: "int key"}), "malformed"),
        (b"\x81" + msgpack.packb("k") + b"\xc7\x01\x05x", "malformed"),  # ext types are refused
        (msgpack.packb({"k": "x" * (wire.MAX_HEADER_BYTES + 1)}), "oversized"),
    ],
)
def test_junk_headers_are_classified_never_unpickled(data, reason, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the transport must never unpickle")

    monkeypatch.setattr(pickle, "loads", forbidden)
    with pytest.raises(wire.WireError) as err:
        wire.unpack_header(data)
    assert err.value.reason == reason


def test_version_mismatch_names_both_versions():
    with pytest.raises(ProtocolMismatch, match=f"version 99.*version {wire.PROTOCOL_VERSION}"):
        wire.check_version({"v": 99}, local="this learner", remote="the actor")
    with pytest.raises(wire.WireError, match="protocol version"):
        wire.check_version({"v": "1"}, local="a", remote="b")
    wire.check_version({"v": wire.PROTOCOL_VERSION}, local="a", remote="b")


def valid_header(**changes):
    header = {
        "v": wire.PROTOCOL_VERSION,
        "type": "batch",
        "actor": "a0",
        "session": 7,
        "seq": 3,
        "base": 1,
        "tx": 9,
        "index": 3,
        "dropped_before": 0,
        "param_version": 2,
        "n": 2,
        "arrays": [["env_index", "int32", [2]]],
    }
    header.update(changes)
    return header


def test_batch_fields_parse_and_reject_wrong_types():
    fields = wire.parse_batch_fields(valid_header())
    assert (fields.actor_id, fields.session, fields.seq, fields.base, fields.n) == ("a0", 7, 3, 1, 2)
    for bad in (
        {"seq": True},
        {"seq": -1},
        {"seq": 1.0},
        {"base": 4},
        {"actor": ""},
        {"actor": "x" * 200},
        {"actor": "a\n"},
        {"n": 0},
        {"session": None},
    ):
        with pytest.raises(wire.WireError) as err:
            wire.parse_batch_fields(valid_header(**bad))
        assert err.value.reason == "bad_header", bad


@pytest.mark.parametrize(
    "arrays",
    [
        None,
        [],
        [["env_index", "int32"]],
        [["env_index", "object", [2]]],
        [["env_index", "int32", [3]]],
        [["env_index", "int32", [2]], ["env_index", "int32", [2]]],
        [["x", "float32", [2]]],
        [["env_index", "float32", [2]]],
        [["env_index", "int32", [2, 1]]],
        [["env_index", "int32", [2]], ["x", "uint8", [2, -1]]],
        [["env_index", "int32", [2]], ["x", "uint8", [2] + [1] * 9]],
    ],
)
def test_bad_array_specs_are_rejected(arrays):
    with pytest.raises(wire.WireError) as err:
        wire.parse_specs(valid_header(arrays=arrays), 2)
    assert err.value.reason == "bad_arrays"


def test_frames_must_match_the_specs_byte_for_byte():
    specs = wire.parse_specs(valid_header(), 2)
    good = np.arange(2, dtype=np.int32).tobytes()
    assert wire.decode_arrays(specs, [good])["env_index"].tolist() == [0, 1]
    for frames in ([good[:-1]], [good + b"\0"], [], [good, good]):
        with pytest.raises(wire.WireError) as err:
            wire.decode_arrays(specs, frames)
        assert err.value.reason == "bad_arrays"


def test_param_messages_round_trip_and_reject_truncation():
    message = wire.encode_param_message({"v": 1, "type": "params", "version": 5}, b"payload")
    header, payload = wire.decode_param_message(message, max_bytes=1024)
    assert header["version"] == 5 and bytes(payload) == b"payload"
    for junk, reason in (
        (message[:3], "malformed"),
        (message[:6], "malformed"),
        (pickle.dumps({"params": 1}), "pickle"),
        (b"\xff\xff\xff\x7f" + b"x" * 10, "malformed"),
    ):
        with pytest.raises(wire.WireError) as err:
            wire.decode_param_message(junk, max_bytes=1024)
        assert err.value.reason == reason
    with pytest.raises(wire.WireError, match="oversized"):
        wire.decode_param_message(message + b"x" * (wire.MAX_HEADER_BYTES + 2048), max_bytes=1024)
