"""Node flags derived from the config dataclasses by tyro: one flag per config field, whose default and help
are the field's own, so every default lives in one place (the dataclass, or the preset a run names).

A node's flags are the fields of its roots (config instances: the node's config, plus small option dataclasses
for what only the entry point uses), flattened: nested configs keep their own group in --help but no prefix in
the flag name (`--utd`, not `--rate.utd`). A `Layout` says which fields are not flags (derived by the entry
point, or internal), which take another name (`rate.min_inserts` is `--training_starts`), and which are shown
in another unit (`away_buffer_bytes` as `--away_buffer_mb`). `parse` builds the mirror dataclasses tyro reads,
with the roots' values as defaults, and rebuilds the roots from what tyro returns with `dataclasses.replace`:
nothing is copied by hand, and a field added to a config is a flag the next time a node starts.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import inspect
import io
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

import tyro


@dataclasses.dataclass(frozen=True)
class Convert:
    """A field shown in another type or unit: `to_flag(value)` for the default, `to_config(flag)` back."""

    type: Any
    to_flag: Callable[[Any], Any]
    to_config: Callable[[Any], Any]
    help: str | None = None  # the flag's help where the field's comment speaks of the other unit


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a node's roots become flags. Paths are dotted from the root's name: "config.rate.min_inserts"."""

    rename: Mapping[str, str] = dataclasses.field(default_factory=dict)  # path -> flag name (default: field name)
    hidden: frozenset[str] = frozenset()  # paths (fields or whole nested configs) that are not flags
    only: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # nested path -> its flag fields
    convert: Mapping[str, Convert] = dataclasses.field(default_factory=dict)  # path -> another type or unit
    append: frozenset[str] = frozenset()  # tuple fields given as a repeated flag (--demo_path a --demo_path b)


def parse(
    argv: Sequence[str], roots: Mapping[str, Any], layout: Layout, *, prog: str, description: str
) -> dict[str, Any]:
    """The roots with every flag given in `argv` applied. A root given as a dataclass type (one with required
    fields: a required flag each) comes back as its fields' values, a dict, for the caller to build. Bad flags or
    values raise `FlagError` (one line); --help prints the help and exits with status 0."""
    mirror = _mirror_root(roots, layout)
    with _tyro_errors():
        parsed = tyro.cli(
            Annotated[mirror, tyro.conf.OmitArgPrefixes],
            args=list(argv),
            prog=prog,
            description=description,
            use_underscores=True,
        )
    out = {}
    for name, value in roots.items():
        got = getattr(parsed, name)
        out[name] = _values(value, got, name, layout) if isinstance(value, type) else _rebuild(value, got, name, layout)
    return out


def flag_fields(roots: Mapping[str, Any], layout: Layout) -> dict[str, tuple[str, Any]]:
    """Flag name -> (config path, its default as the flag shows it): what `parse` offers, for tests and docs."""
    found: dict[str, tuple[str, Any]] = {}
    for name, value in roots.items():
        for path, flag, default in _leaves(value, name, layout):
            if flag in found:
                raise ValueError(f"flag --{flag} names both {found[flag][0]} and {path}")
            found[flag] = (path, default)
    return found


class FlagError(ValueError):
    """The command line names an unknown flag, or a value its type refuses."""


def pre_parse(argv: Sequence[str], name: str) -> str | None:
    """One flag's value read before the rest (the preset decides the other flags' defaults)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument(f"--{name}", default=None)
    known, _ = parser.parse_known_args(list(argv))
    return getattr(known, name)


def _default(value: Any, f: dataclasses.Field) -> Any:
    """The field's value in `value`, or where `value` is a dataclass type, the field's default (MISSING: none)."""
    if not isinstance(value, type):
        return getattr(value, f.name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _values(cls: type, parsed: Any, path: str, layout: Layout) -> dict[str, Any]:
    """A type root's field values from its mirror: nested configs rebuilt from their defaults."""
    defaults = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for f in dataclasses.fields(parsed):
        sub, got = f"{path}.{f.name}", getattr(parsed, f.name)
        if dataclasses.is_dataclass(got):
            values[f.name] = _rebuild(_default(cls, defaults[f.name]), got, sub, layout)
        else:
            values[f.name] = layout.convert[sub].to_config(got) if sub in layout.convert else got
    return values


def _walk(value: Any, path: str, layout: Layout):
    """(field, its path, its default, whether it is a nested config) for each field of `value` that is a flag
    or holds flags."""
    for f in dataclasses.fields(value):
        sub = f"{path}.{f.name}"
        if sub in layout.hidden or (path in layout.only and f.name not in layout.only[path]):
            continue
        child = _default(value, f)
        yield f, sub, child, dataclasses.is_dataclass(child) and sub not in layout.convert


def _leaves(value: Any, path: str, layout: Layout):
    for f, sub, child, nested in _walk(value, path, layout):
        if nested:
            yield from _leaves(child, sub, layout)
        else:
            convert = layout.convert.get(sub)
            yield sub, layout.rename.get(sub, f.name), convert.to_flag(child) if convert else child


def _mirror_root(roots: Mapping[str, Any], layout: Layout) -> type:
    flag_fields(roots, layout)  # refuses two fields under one flag name
    fields = []
    for name, value in roots.items():
        cls = _mirror(value, name, layout)
        if any(f.default is dataclasses.MISSING for f in dataclasses.fields(cls)):
            fields.append((name, cls))  # a required flag in it: tyro builds it from the command line
        else:
            fields.append((name, cls, dataclasses.field(default_factory=_factory(cls, value, name, layout))))
    return dataclasses.make_dataclass("Flags", fields, frozen=True)


def _mirror(value: Any, path: str, layout: Layout) -> type:
    """A dataclass with `value`'s flag fields, each annotated with its flag name and its field's help."""
    cls = value if isinstance(value, type) else type(value)
    hints = typing.get_type_hints(cls)
    fields = []
    for f, sub, child, is_nested in _walk(value, path, layout):
        if is_nested:
            nested = _mirror(child, sub, layout)
            fields.append((f.name, nested, dataclasses.field(default_factory=_factory(nested, child, sub, layout))))
            continue
        convert = layout.convert.get(sub)
        kind = convert.type if convert else hints[f.name]
        default = convert.to_flag(child) if convert and child is not dataclasses.MISSING else child
        help_text = (convert.help if convert else None) or field_help(cls).get(f.name)
        arg = tyro.conf.arg(name=layout.rename.get(sub, f.name), help=help_text)
        markers = (tyro.conf.UseAppendAction,) if sub in layout.append else ()
        fields.append((f.name, Annotated[(kind, arg, *markers)], dataclasses.field(default=default)))
    return dataclasses.make_dataclass(f"{cls.__name__}Flags", fields, frozen=True)


@functools.cache
def field_help(cls: type) -> dict[str, str]:
    """Each field's comment in the class source: the one on its line, else the comment lines right above it."""
    lines, _ = inspect.getsourcelines(cls)
    found, above, in_docstring = {}, [], False
    for line in lines[1:]:
        code, _, comment = line.partition("  # ")
        stripped = line.strip()
        if line.count('"""') % 2:
            in_docstring = not in_docstring
            continue
        if in_docstring or stripped.startswith('"""'):
            continue
        if stripped.startswith(("def ", "@")):
            break  # the fields come first
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# ").strip())
            if len(above) == 1 and len(above[0].split()) <= 2:  # a section title ("# Networks."), not a field's help
                above = []
            continue
        match = re.match(r"\s+(\w+):\s", code)
        if match and match.group(1) not in found:
            text = comment.strip() if comment.strip() else " ".join(above)
            if text:
                found[match.group(1)] = text
        above = []
    return found


def _factory(mirror: type, value: Any, path: str, layout: Layout) -> Callable[[], Any]:
    def make():
        kwargs = {}
        for f in dataclasses.fields(mirror):
            child = _default(value, f)
            if dataclasses.is_dataclass(f.type):
                kwargs[f.name] = _factory(f.type, child, f"{path}.{f.name}", layout)()
            else:
                kwargs[f.name] = f.default
        return mirror(**kwargs)

    return make


def _rebuild(value: Any, parsed: Any, path: str, layout: Layout) -> Any:
    changes = {}
    for f in dataclasses.fields(parsed):
        sub, got = f"{path}.{f.name}", getattr(parsed, f.name)
        if dataclasses.is_dataclass(got):
            changes[f.name] = _rebuild(getattr(value, f.name), got, sub, layout)
        else:
            changes[f.name] = layout.convert[sub].to_config(got) if sub in layout.convert else got
    return dataclasses.replace(value, **changes)


@contextlib.contextmanager
def _tyro_errors():
    """tyro's error box as one `FlagError` line; its help goes to stdout and exits 0 as usual."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    except SystemExit as e:
        if e.code in (0, None):
            raise
        raise FlagError(_one_line(captured.getvalue())) from None


def _one_line(text: str) -> str:
    """The message of tyro's error box: the lines between its title and its first rule (the hints follow)."""
    body = []
    for line in text.splitlines():
        inner = line.strip().strip("│").strip()
        if line.lstrip().startswith("╭"):
            continue
        if line.lstrip().startswith("╰") or (body and set(inner) <= set("─")):
            break
        if inner and not set(inner) <= set("─"):
            body.append(inner)
    return " ".join(body) or text.strip() or "bad command line"
