"""Plain input read, and models dumped, without building pydantic's validators.

Building a model's validator and serializer (pydantic's schema generation, and its plugin
discovery, which imports ``importlib.metadata`` and scans every installed distribution) is
most of what reading ``uet.toml`` and one workstream costs a ``uet run`` before its first tool.
Most input is plain: the types the file formats give (str, int, float, bool, lists, tables)
exactly where the model expects them. ``construct`` accepts such input and gives the model
pydantic would give; ``dump`` gives ``model_dump``'s answer for the modes uet uses. Either
returns None on anything it does not fully understand (a value to coerce, a constraint or a
validator it does not know, an invalid value): the caller then asks pydantic, which also
words every error. ``tests/spec/test_plain.py`` compares both with pydantic.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

_NOT = object()  # a value the plain rules do not settle (pydantic decides)
_BOUNDS: dict[type, tuple[str, Callable[[Any, Any], bool]]] = {
    annotated_types.Gt: ("gt", lambda v, b: bool(v > b)),
    annotated_types.Ge: ("ge", lambda v, b: bool(v >= b)),
    annotated_types.Lt: ("lt", lambda v, b: bool(v < b)),
    annotated_types.Le: ("le", lambda v, b: bool(v <= b)),
}
_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class _Field:
    name: str
    key: str | None  # the alias, when the field has one
    annotation: Any
    bounds: tuple[tuple[Callable[[Any, Any], bool], Any], ...]
    default: Any  # PydanticUndefined: required
    factory: Callable[[], Any] | None
    after: tuple[Callable[[Any], Any], ...]  # field validators, mode "after"


@dataclass(frozen=True)
class _Plan:
    fields: tuple[_Field, ...]
    keys: Mapping[str, _Field]  # every accepted input key (names and aliases)
    model_after: tuple[Callable[[Any], Any], ...]


_plans: dict[type, _Plan | None] = {}
# Pydantic's built validator and serializer are several times faster per call: past this many
# uses of a model (a run of many workstreams) building them is the cheaper way.
PLAIN_USES = 64
_uses: dict[type, int] = {}


def worth_it(cls: type[BaseModel]) -> bool:
    """Whether to read (or dump) ``cls`` here rather than through pydantic: until pydantic's
    validator is built, for the first ``PLAIN_USES`` uses."""
    if cls.__pydantic_complete__:
        return False
    n = _uses.get(cls, 0)
    if n >= PLAIN_USES:
        return False
    _uses[cls] = n + 1
    return True


def construct(cls: type[BaseModel], data: Any) -> BaseModel | None:
    """``cls.model_validate(data)`` when ``data`` is plain and valid, else None."""
    values = _values(cls, data)
    if values is None:
        return None
    fields_set, vals = values
    model = cls.model_construct(_fields_set=fields_set, **vals)
    for check in _plan(cls).model_after:  # type: ignore[union-attr]
        try:
            model = check(model)
        except (ValueError, AssertionError):
            return None
    return model


def fill(model: BaseModel, data: Mapping[str, Any]) -> bool:
    """``BaseModel.__init__(model, **data)`` when ``data`` is plain and valid (True), else
    nothing is done (False)."""
    built = construct(type(model), dict(data))
    if built is None:
        return False
    model.__setstate__(built.__getstate__())
    return True


def _values(cls: type[BaseModel], data: Any) -> tuple[set[str], dict[str, Any]] | None:
    plan = _plan(cls)
    if plan is None or type(data) is not dict:
        return None
    given: dict[str, Any] = {}
    for key, value in data.items():
        spec = plan.keys.get(key) if type(key) is str else None
        if spec is None or spec.name in given:  # extra="forbid"; a name and its alias
            return None
        given[spec.name] = value
    vals: dict[str, Any] = {}
    for spec in plan.fields:
        if spec.name not in given:
            if spec.factory is not None:
                vals[spec.name] = spec.factory()
            elif spec.default is PydanticUndefined:
                return None
            else:
                vals[spec.name] = spec.default
            continue
        value = _check(spec.annotation, given[spec.name])
        if value is _NOT or not _within(value, spec.bounds):
            return None
        for after in spec.after:
            try:
                value = after(value)
            except (ValueError, AssertionError):
                return None
        vals[spec.name] = value
    return set(given), vals


def _check(tp: Any, v: Any) -> Any:
    """``v`` as pydantic's lax mode gives it for type ``tp``, or ``_NOT``."""
    if tp is Any:
        return v
    if tp is str or tp is bool:
        return v if type(v) is tp else _NOT
    if tp is int:
        return v if type(v) is int else _NOT
    if tp is float:
        if type(v) is float and math.isfinite(v):
            return v
        if type(v) is int and abs(v) < 2 ** 53:
            return float(v)
        return _NOT
    if tp is type(None):
        return v if v is None else _NOT
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        model = construct(tp, v) if type(v) is dict else None
        return _NOT if model is None else model
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return v if any(type(v) is type(a) and v == a for a in args) else _NOT
    if origin is list and len(args) == 1:
        if type(v) is not list:
            return _NOT
        out = [_check(args[0], x) for x in v]
        return _NOT if any(x is _NOT for x in out) else out
    if origin is dict and len(args) == 2:
        if type(v) is not dict:
            return _NOT
        pairs = [(_check(args[0], k), _check(args[1], x)) for k, x in v.items()]
        return _NOT if any(k is _NOT or x is _NOT for k, x in pairs) else dict(pairs)
    if origin is typing.Annotated:
        inner = _check(args[0], v)
        bounds = _bounds(args[1:])
        if inner is _NOT or bounds is None or not _within(inner, bounds):
            return _NOT
        return inner
    if origin is typing.Union or origin is types.UnionType:
        # exactly one member takes it as it is (no member converts it): pydantic's smart
        # union picks that one; anything less clear is pydantic's to decide
        if type(v) is int and any(_base(a) is float for a in args):
            # an int where a float is expected becomes that float, unless an int is too
            if any(_base(a) is int for a in args):
                return _NOT
            return _check(next(a for a in args if _base(a) is float), v)
        taken = [x for x in (_check(a, v) for a in args) if x is not _NOT]
        return taken[0] if len(taken) == 1 else _NOT
    return _NOT


def _within(v: Any, bounds: tuple[tuple[Callable[[Any, Any], bool], Any], ...]) -> bool:
    """``v`` within the bounds: a number checked; None passes them (pydantic bounds the
    number of an optional field, not its None); anything else is pydantic's to decide."""
    if not bounds or v is None:
        return True
    if type(v) not in (int, float):
        return False
    return all(ok(v, b) for ok, b in bounds)


def _base(tp: Any) -> Any:
    return typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp


def _bounds(metadata: Any) -> tuple[tuple[Callable[[Any, Any], bool], Any], ...] | None:
    """The numeric bounds in a field's metadata, or None when it holds anything else."""
    out = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            inner = _bounds(item.metadata)
            if inner is None:
                return None
            out.extend(inner)
            continue
        known = _BOUNDS.get(type(item))
        if known is None:
            return None
        out.append((known[1], getattr(item, known[0])))
    return tuple(out)


def _plan(cls: type[BaseModel]) -> _Plan | None:
    if cls not in _plans:
        _plans[cls] = _make_plan(cls)
    return _plans[cls]


def _make_plan(cls: type[BaseModel]) -> _Plan | None:
    """How ``construct`` reads ``cls``; None when the model uses anything it does not know."""
    config = cls.model_config
    decorators = cls.__pydantic_decorators__
    if (config.get("extra") != "forbid" or not config.get("populate_by_name")
            or config.get("strict") or config.get("validate_default")
            or decorators.validators or decorators.root_validators
            or decorators.field_serializers or decorators.model_serializers
            or decorators.computed_fields
            # a model_post_init of its own (pydantic's private attribute set-up is kept:
            # model_construct runs it)
            or (cls.__pydantic_post_init__
                and not getattr(cls.model_post_init, "__module__", "").startswith("pydantic."))
            or any(d.info.mode != "after" for d in decorators.field_validators.values())
            or any(d.info.mode != "after" for d in decorators.model_validators.values())):
        return None
    fields = []
    for name, info in cls.model_fields.items():
        bounds = _bounds(info.metadata)
        if (bounds is None or info.validation_alias not in (None, info.alias)
                or info.serialization_alias not in (None, info.alias) or info.exclude):
            return None
        factory = info.default_factory
        if factory is not None and not (factory in (list, dict) or (
                isinstance(factory, type) and issubclass(factory, BaseModel))):
            return None  # a factory that might take the validated data
        if info.default is not PydanticUndefined and type(info.default) not in _SCALARS:
            return None  # pydantic copies a mutable default; the models use factories
        after = tuple(d.func for d in decorators.field_validators.values()
                      if name in d.info.fields or "*" in d.info.fields)
        fields.append(_Field(name, info.alias, info.annotation, bounds, info.default,
                             factory,  # type: ignore[arg-type]
                             after))
    keys: dict[str, _Field] = {}
    for f in fields:
        keys[f.name] = f
        if f.key is not None:
            keys[f.key] = f
    model_after = tuple(d.func for d in decorators.model_validators.values())
    return _Plan(tuple(fields), keys, model_after)


def dump(model: BaseModel, *, mode: str = "python", by_alias: bool | None = None
         ) -> dict[str, Any] | None:
    """``model.model_dump(mode=mode, by_alias=by_alias)`` of a model whose values are plain,
    else None."""
    if mode not in ("python", "json"):
        return None
    out = _dump_model(model, mode == "json", bool(by_alias))
    return out if isinstance(out, dict) else None


def _dump_model(model: BaseModel, json: bool, by_alias: bool) -> Any:
    plan = _plan(type(model))
    if plan is None or model.__pydantic_extra__:
        return _NOT
    out: dict[str, Any] = {}
    values = model.__dict__
    for spec in plan.fields:
        value = _dump(spec.annotation, values[spec.name], json, by_alias)
        if value is _NOT:
            return _NOT
        out[spec.key if by_alias and spec.key is not None else spec.name] = value
    return out


def _dump(tp: Any, v: Any, json: bool, by_alias: bool) -> Any:
    members = [_base(a) for a in _members(tp)]
    if isinstance(v, BaseModel):
        return _dump_model(v, json, by_alias) if type(v) in members or Any in members else _NOT
    if type(v) is int and float in members:
        # the serializer's float in JSON, the value itself in a python dump; in a union
        # pydantic picks the member
        numbers = [m for m in members if m is not type(None)]
        return (float(v) if json else v) if numbers == [float] else _NOT
    if type(v) is float:
        return v if math.isfinite(v) else _NOT
    if type(v) in _SCALARS:
        return v
    if type(v) is list:
        item = _item(members, list, 0)
        if item is _NOT:
            return _NOT
        out = [_dump(item, x, json, by_alias) for x in v]
        return _NOT if any(x is _NOT for x in out) else out
    if type(v) is dict:
        item = _item(members, dict, 1)
        if item is _NOT:
            return _NOT
        pairs = [(k, _dump(item, x, json, by_alias)) for k, x in v.items()]
        if any(type(k) is not str or x is _NOT for k, x in pairs):
            return _NOT
        return dict(pairs)
    return _NOT


def _members(tp: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(tp)
    return typing.get_args(tp) if origin is typing.Union or origin is types.UnionType else (tp,)


def _item(members: list[Any], container: type, index: int) -> Any:
    """The item type of the one ``container`` member (``Any`` for an ``Any`` member)."""
    if Any in members:
        return Any
    found = [typing.get_args(m) for m in members if typing.get_origin(m) is container]
    if len(found) != 1 or len(found[0]) != index + 1:
        return _NOT
    return found[0][index]
