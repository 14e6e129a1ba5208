"""Standard 3DGS `.ply` files, read by property name (manifests binding files to bodies: `manifest.py`).

Layout (INRIA trainer, gsplat's exporter, SuperSplat's uncompressed export): one `vertex` element with
float properties x y z, optional nx ny nz, f_dc_0..2, f_rest_0..(3*(K-1)-1) stored channel-major (all of
red's higher bands, then green's, then blue's), opacity (logit), scale_0..2 (log), rot_0..3 (wxyz).
serl_gs adds one optional integer property, `body_id`: the MuJoCo body each Gaussian is bound to, its
means and rotations given in that body's frame. A file without it is bound to the static world (body 0)
unless the caller says otherwise. Every other vertex property (nx ny nz, a viewer's red green blue, ...)
is kept in `GaussianScene.extras` with its type and written back by `write_ply` (nx ny nz right after
x y z, as INRIA writes them; the others after rot_3). Elements other than `vertex` are not read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from serl_gs.render.scene import NORMAL_NAMES, GaussianScene

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_PLY_NAMES = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort",
              "i4": "int", "u4": "uint", "f4": "float", "f8": "double"}  # fmt: skip
_FORMATS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": "ascii"}
_REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
             "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")  # fmt: skip


class _Element:
    def __init__(self, name: str, count: int):
        self.name, self.count = name, count
        self.properties: list[tuple[str, str]] = []  # (name, numpy type code)
        self.has_list = False


def read_ply(path: str | os.PathLike, body_id: int | None = None) -> GaussianScene:
    """Loads a 3DGS `.ply`. `body_id` binds every Gaussian to that body, overriding any `body_id` column.

    Raises ValueError naming the file and the problem for malformed, truncated or non-3DGS files.
    """
    path = Path(path)
    data = path.read_bytes()
    fmt, elements, body_start = _parse_header(path, data)
    vertex = next((e for e in elements if e.name == "vertex"), None)
    if vertex is None:
        raise ValueError(f"{path}: no 'vertex' element in the header")
    names = [p for p, _ in vertex.properties]
    missing = [p for p in _REQUIRED if p not in names]
    if missing:
        raise ValueError(f"{path}: not a 3DGS file, vertex element lacks properties {missing}")
    if vertex.has_list:
        raise ValueError(f"{path}: list properties in the vertex element are not supported")
    columns = _read_vertex_columns(path, data, fmt, elements, vertex, body_start)

    rest = sorted((int(m.group(1)), p) for p in names if (m := re.fullmatch(r"f_rest_(\d+)", p)))
    if [i for i, _ in rest] != list(range(len(rest))):
        raise ValueError(f"{path}: f_rest_* properties must be numbered 0..M-1, got {[p for _, p in rest]}")
    if len(rest) % 3:
        raise ValueError(f"{path}: {len(rest)} f_rest_* properties is not a multiple of 3")
    n = vertex.count
    k_rest = len(rest) // 3
    sh = np.empty((n, 1 + k_rest, 3), np.float32)
    sh[:, 0] = np.stack([columns[f"f_dc_{c}"] for c in range(3)], -1)
    if k_rest:
        rest_values = np.stack([columns[p] for _, p in rest], -1)  # [N, 3 * (K-1)], channel-major
        sh[:, 1:] = rest_values.reshape(n, 3, k_rest).transpose(0, 2, 1)
    if body_id is not None:
        bodies = np.full(n, body_id, np.int32)
    elif "body_id" in columns:
        bodies = columns["body_id"].astype(np.int64)
        if n and (bodies.min() < 0 or bodies.max() > np.iinfo(np.int32).max):
            raise ValueError(f"{path}: body_id values out of range [{bodies.min()}, {bodies.max()}]")
    else:
        bodies = np.zeros(n, np.int32)
    standard = set(_REQUIRED) | {p for _, p in rest} | {"body_id"}
    extras = {p: columns[p] for p in names if p not in standard}
    try:
        return GaussianScene(
            means=np.stack([columns[a] for a in "xyz"], -1),
            quats=np.stack([columns[f"rot_{i}"] for i in range(4)], -1),
            log_scales=np.stack([columns[f"scale_{i}"] for i in range(3)], -1),
            opacity_logits=columns["opacity"],
            sh=sh,
            body_ids=bodies,
            extras=extras,
        )
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def write_ply(path: str | os.PathLike, scene: GaussianScene) -> None:
    """Writes `scene` as a binary little-endian 3DGS `.ply` with a `body_id` column and every extra
    property (`scene.extras`, each in its own type). Exact round trip."""
    n, k = scene.num_gaussians, scene.sh.shape[1]
    extras = dict(scene.extras)
    columns = [("x", scene.means[:, 0]), ("y", scene.means[:, 1]), ("z", scene.means[:, 2])]
    columns += [(name, extras.pop(name)) for name in NORMAL_NAMES if name in extras]
    columns += [(f"f_dc_{c}", scene.sh[:, 0, c]) for c in range(3)]
    rest = scene.sh[:, 1:].transpose(0, 2, 1).reshape(n, 3 * (k - 1))  # channel-major, as INRIA writes it
    columns += [(f"f_rest_{i}", rest[:, i]) for i in range(rest.shape[1])]
    columns += [("opacity", scene.opacity_logits)]
    columns += [(f"scale_{i}", scene.log_scales[:, i]) for i in range(3)]
    columns += [(f"rot_{i}", scene.quats[:, i]) for i in range(4)]
    columns += list(extras.items()) + [("body_id", scene.body_ids)]
    types = {name: values.dtype.str[1:] for name, values in columns}  # scene dtypes are all PLY types
    table = np.empty(n, np.dtype([(name, "<" + code) for name, code in types.items()]))
    for name, values in columns:
        table[name] = values
    header = ["ply", "format binary_little_endian 1.0", "comment serl_gs scene, body_id = MuJoCo body",
              f"element vertex {n}"]  # fmt: skip
    header += [f"property {_PLY_NAMES[code]} {name}" for name, code in types.items()] + ["end_header"]
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(("\n".join(header) + "\n").encode("ascii") + table.tobytes())
    os.replace(tmp, path)  # readers never see a half-written file (the scene cache relies on it)


def _parse_header(path: Path, data: bytes) -> tuple[str, list[_Element], int]:
    if not data.startswith(b"ply"):
        raise ValueError(f"{path}: not a PLY file (no 'ply' magic at the start)")
    end = data.find(b"end_header")
    if end < 0:
        raise ValueError(f"{path}: PLY header has no 'end_header' line (file truncated or not a PLY)")
    newline = data.find(b"\n", end)
    if newline < 0:
        raise ValueError(f"{path}: file ends right after 'end_header' (truncated)")
    try:
        lines = data[:end].decode("ascii").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: PLY header is not ASCII ({err})") from err
    fmt, elements = None, []
    for number, line in enumerate(lines[1:], start=2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            if len(words) != 3 or words[1] not in _FORMATS:
                raise ValueError(f"{path}: header line {number}: unsupported format {line!r}")
            fmt = _FORMATS[words[1]]
        elif words[0] == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise ValueError(f"{path}: header line {number}: malformed element line {line!r}")
            elements.append(_Element(words[1], int(words[2])))
        elif words[0] == "property":
            if not elements:
                raise ValueError(f"{path}: header line {number}: property before any element")
            if len(words) == 5 and words[1] == "list":
                elements[-1].has_list = True
                elements[-1].properties.append((words[4], "list"))
            elif len(words) == 3 and words[1] in _PLY_TYPES:
                elements[-1].properties.append((words[2], _PLY_TYPES[words[1]]))
            else:
                raise ValueError(f"{path}: header line {number}: malformed property line {line!r}")
        else:
            raise ValueError(f"{path}: header line {number}: unknown keyword {words[0]!r}")
    if fmt is None:
        raise ValueError(f"{path}: PLY header has no 'format' line")
    return fmt, elements, newline + 1


def _read_vertex_columns(path, data, fmt, elements, vertex, body_start) -> dict[str, np.ndarray]:
    if fmt == "ascii":
        return _read_ascii_vertex(path, data[body_start:], elements, vertex)
    offset = body_start
    for element in elements:
        if element is vertex:
            break
        if element.has_list:
            raise ValueError(
                f"{path}: element {element.name!r} before 'vertex' has list properties (unsupported)"
            )
        offset += element.count * np.dtype([(p, fmt + t) for p, t in element.properties]).itemsize
    dtype = np.dtype([(p, fmt + t) for p, t in vertex.properties])
    need, have = vertex.count * dtype.itemsize, len(data) - offset
    if have < need:
        raise ValueError(
            f"{path}: truncated: header declares {vertex.count} vertices x {dtype.itemsize} bytes = "
            f"{need} bytes, but only {max(have, 0)} bytes follow"
        )
    table = np.frombuffer(data, dtype, count=vertex.count, offset=offset)
    return {p: table[p].astype(_column_type(p, t)) for p, t in vertex.properties}


def _column_type(name: str, code: str) -> np.dtype:
    """Standard 3DGS properties become float32 (body_id int64 for its range check); others keep their type."""
    if name == "body_id":
        return np.dtype(np.int64)
    if name in _REQUIRED or name.startswith("f_rest_"):
        return np.dtype(np.float32)
    return np.dtype(code)


def _read_ascii_vertex(path, body: bytes, elements, vertex) -> dict[str, np.ndarray]:
    lines = body.decode("ascii", errors="replace").splitlines()
    skip = 0
    for element in elements:
        if element is vertex:
            break
        skip += element.count
    rows = lines[skip : skip + vertex.count]
    if len(rows) < vertex.count:
        raise ValueError(
            f"{path}: truncated: header declares {vertex.count} vertices, found {len(rows)} lines"
        )
    width = len(vertex.properties)
    try:
        table = np.array([[float(v) for v in row.split()] for row in rows], np.float64).reshape(-1, width)
    except ValueError as err:
        raise ValueError(
            f"{path}: malformed ASCII vertex data, each line needs {width} numbers ({err})"
        ) from err
    return {p: table[:, i].astype(_column_type(p, t)) for i, (p, t) in enumerate(vertex.properties)}
