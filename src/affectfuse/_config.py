"""Frozen keyword-only config dataclasses: overrides with clear errors, YAML round trips.

Every config of the project is ``@dataclass(frozen=True, kw_only=True)`` with a ``validate()`` method
that returns ``self`` or raises ``ValueError`` naming the field, what was expected and what came.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _coerce(tp: Any, value: Any) -> Any:
    """Turn YAML values back into the annotated type (lists → tuples)."""
    origin = typing.get_origin(tp)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        return tuple(value)
    if origin in (typing.Union, types.UnionType):
        for a in typing.get_args(tp):
            if a is type(None) and value is None:
                return None
        for a in typing.get_args(tp):
            if a is not type(None):
                return _coerce(a, value)
    if origin is dict and isinstance(value, dict):
        return {k: _coerce(typing.get_args(tp)[1], v) for k, v in value.items()} if typing.get_args(tp) else value
    return value


def make_config(cls: type[C], overrides: dict[str, Any] | None = None, base: C | None = None) -> C:
    """Build (or update ``base``) a config from keyword overrides, then validate it.

    Raises:
        TypeError: an override names no field of ``cls``; the message lists the accepted fields.
    """
    overrides = dict(overrides or {})
    names = field_names(cls)
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise TypeError(f"{cls.__name__}: unknown field(s) {unknown}; accepted fields: {', '.join(names)}")
    hints = typing.get_type_hints(cls)
    overrides = {k: _coerce(hints.get(k, Any), v) for k, v in overrides.items()}
    cfg = dataclasses.replace(base, **overrides) if base is not None else cls(**overrides)
    validate = getattr(cfg, "validate", None)
    return validate() if callable(validate) else cfg  # type: ignore[return-value]


def to_dict(cfg: Any) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return conv(cfg)


def from_dict(cls: type[C], data: dict[str, Any]) -> C:
    return make_config(cls, data)


def to_yaml(cfg: Any, path: str | Path | None = None) -> str:
    text = yaml.safe_dump({"type": type(cfg).__name__, **to_dict(cfg)}, sort_keys=False)
    if path is not None:
        Path(path).write_text(text)
    return text


def from_yaml(cls: type[C], src: str | Path) -> C:
    text = Path(src).read_text() if isinstance(src, Path) or (isinstance(src, str) and "\n" not in src and Path(src).exists()) else src
    data = yaml.safe_load(text) or {}
    kind = data.pop("type", cls.__name__)
    if kind != cls.__name__:
        raise ValueError(f"config is a {kind}, expected a {cls.__name__}")
    return make_config(cls, data)
