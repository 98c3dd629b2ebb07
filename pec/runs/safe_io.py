"""Reading JSON and YAML that someone else wrote: one clear error instead of a traceback.

Every file pec reads — a config, a scores or designs file, and the files a run recorded
itself (state, candidates, scores, results) — goes through these helpers, which turn each
way such a file can be broken into one :class:`PECError` line naming the file and the fix:
bytes that are not UTF-8, syntax errors, nesting deep enough to exhaust the parser's
recursion, non-finite numbers (``NaN``, ``Infinity``, ``1e999``), files too large to be
what they claim. (Arrays travel as .npy, read with allow_pickle=False and checked where
they are used: pec.jobs.run.) The error class is the caller's:
a user's file raises InputError or ConfigError, a run's own record StateError.
:func:`reject_booleans` keeps pydantic models from reading ``true`` as the number 1.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from pec.errors import NotFoundError, PECError
from pec.runs.store.base import Store

MAX_NESTING = 32
"""Deepest nesting of lists/objects accepted; pec's own files use at most 6 levels."""

MAX_TEXT_BYTES = 256 * 1024 * 1024
"""Largest JSON/YAML file read at all (a run's state with 10^6 designs is about 60 MB)."""

MAX_NODES = 20_000_000
"""Most values a decoded document may hold (YAML aliases can repeat one list many times)."""


def _fail(error: type[PECError], message: str) -> PECError:
    return error(message)


def decode_utf8(data: bytes, source: str, error: type[PECError]) -> str:
    """UTF-8 text of ``data`` (a leading BOM is allowed), else one line naming the byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail(
            error,
            f"{source}: not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}); "
            "save it as UTF-8",
        ) from None


def read_local_file(path: Path, source: str, error: type[PECError]) -> bytes:
    """The bytes of a user's file; missing, unreadable or oversized files are one line."""
    try:
        size = path.stat().st_size
        if size > MAX_TEXT_BYTES:
            raise _fail(
                error,
                f"{source}: {size / 2**20:.0f} MiB; files above {MAX_TEXT_BYTES // 2**20} MiB "
                "are refused, pass the file pec expects",
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise _fail(error, f"{source} does not exist; pass an existing file") from None
    except IsADirectoryError:
        raise _fail(error, f"{source} is a folder; pass a file") from None
    except OSError as exc:
        raise _fail(error, f"{source} cannot be read: {exc.strerror}") from None


def nesting_depth(value: Any) -> int:
    """Depth of nested lists/tuples/dicts, computed without recursion.

    Stops early (returning ``MAX_NESTING + 1``) past ``MAX_NESTING`` levels or ``MAX_NODES``
    values, so an alias-expanded YAML bomb cannot make the check itself explode.
    """
    deepest = 0
    visited = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        visited += 1
        if visited > MAX_NODES:
            return MAX_NESTING + 1
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > MAX_NESTING:
                return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def _too_deep(source: str, error: type[PECError]) -> PECError:
    return _fail(
        error,
        f"{source}: nests lists/objects deeper than {MAX_NESTING} levels (or holds more than "
        f"{MAX_NODES:,} values); pec's files are small and flat, fix the file",
    )


def _non_finite(token: str) -> float:
    raise ValueError(token)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def parse_json(
    data: bytes | str, source: str, error: type[PECError], *, finite: bool = True
) -> Any:
    """Decode JSON strictly: UTF-8, bounded nesting, finite numbers only.

    ``finite=False`` lets NaN/Infinity through, for records whose free-form metrics may
    legitimately hold them (a training's mean reward before any episode ended).
    """
    if isinstance(data, bytes):
        if len(data) > MAX_TEXT_BYTES:
            raise _fail(error, f"{source}: larger than {MAX_TEXT_BYTES // 2**20} MiB; refused")
        text = decode_utf8(data, source, error)
    else:
        text = data
    try:
        if finite:
            value = json.loads(text, parse_constant=_non_finite, parse_float=_finite_float)
        else:
            value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(
            error,
            f"{source}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "fix or restore the file",
        ) from None
    except RecursionError:
        raise _too_deep(source, error) from None
    except ValueError as exc:  # a NaN/Infinity constant or an overflowing number
        raise _fail(
            error,
            f"{source}: holds {str(exc)[:20]!s}, not a finite number; numbers must be finite "
            "(write null where a value is missing)",
        ) from None
    if nesting_depth(value) > MAX_NESTING:
        raise _too_deep(source, error)
    return value


def parse_yaml(data: bytes | str, source: str, error: type[PECError]) -> Any:
    """Decode YAML with the safe loader: UTF-8, bounded nesting, syntax errors as one line."""
    text = decode_utf8(data, source, error) if isinstance(data, bytes) else data
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise _fail(error, f"{source}: not valid YAML{where}; fix its syntax") from None
    except RecursionError:
        raise _too_deep(source, error) from None
    if nesting_depth(value) > MAX_NESTING:
        raise _too_deep(source, error)
    return value


def read_store_json(
    store: Store, key: str, error: type[PECError], *, finite: bool = True
) -> Any | None:
    """A JSON record of a run through its store, or None when absent; broken ones are one line."""
    try:
        data = store.read_bytes(key)
    except NotFoundError:
        return None
    return parse_json(data, store.uri(key), error, finite=finite)


def expect_mapping(value: Any, source: str, error: type[PECError], *keys: str) -> dict[str, Any]:
    """``value`` as a JSON object holding ``keys``; else one line naming what is wrong."""
    if not isinstance(value, dict):
        raise _fail(error, f"{source}: top level is {type(value).__name__}, expected a JSON object")
    for key in keys:
        if key not in value:
            raise _fail(error, f"{source}: field {key!r} is missing; restore or rewrite the file")
    return value


def allows_bool(annotation: Any) -> bool:
    """Whether a field's type admits a bool (or anything, for Any-typed fields)."""
    if annotation is bool or annotation is Any:
        return True
    return any(allows_bool(arg) for arg in get_args(annotation))


def holds_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, list | tuple):
        return any(holds_bool(v) for v in value)
    return False


def reject_booleans(model: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """Refuse true/false where a number or name is meant (pydantic would read true as 1)."""
    name = info.field_name
    if name is not None and holds_bool(value):
        annotation = model.model_fields[name].annotation
        if not allows_bool(annotation):
            raise ValueError(
                "true/false where a number (or name) is meant; write the number, not a boolean"
            )
    return value


class StrictModel(BaseModel):
    """Base of pec's settings models: unknown keys, non-finite numbers and booleans where a
    number or name is meant are refused (`reject_booleans`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        return reject_booleans(cls, value, info)


__all__ = [
    "MAX_NESTING",
    "MAX_TEXT_BYTES",
    "StrictModel",
    "decode_utf8",
    "expect_mapping",
    "nesting_depth",
    "parse_json",
    "parse_yaml",
    "read_local_file",
    "read_store_json",
    "reject_booleans",
]
