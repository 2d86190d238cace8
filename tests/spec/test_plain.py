"""spec/plain.py gives pydantic's answer or none: every model it constructs equals pydantic's
(values, their types, the fields set), it constructs nothing pydantic refuses, and its dumps
equal ``model_dump``'s. Inputs are generated per model from its own fields (names, aliases,
a stray key; values of every type the file formats give, nested tables for nested models)."""

from __future__ import annotations

import functools
import math
import typing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from uet_git.spec import models, plain

MODELS = [v for v in vars(models).values()
          if isinstance(v, type) and issubclass(v, models._Strict) and v is not models._Strict]
TEXT = st.sampled_from(["", "a", "ws-1", "a..b", "x.lock", "A", "é", "src/**", "dir/", "[",
                        "auto", "end", "never", "stdout", "json", "bwrap", "none", "~/c", "/abs",
                        "dask://h:1", "tls://h:2", "local", "tcp://", "UET_X", "GIT_DIR", "PATH",
                        "claude", "shell", "serialise", "diff"])
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-3, 70000), TEXT,
                   st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0.5, 1.0, 900.0, 2 ** 60]))
VALUE = st.recursive(SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)), max_leaves=6)


def _model_args(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for a in typing.get_args(tp) for m in _model_args(a)]


@functools.cache
def _fields(cls: type[BaseModel]) -> list[tuple[str, str | None, type[BaseModel] | None, bool]]:
    """Per field: name, alias, the first model its annotation names, whether a dict of them."""
    out = []
    for name, info in cls.model_fields.items():
        nested = _model_args(info.annotation)
        out.append((name, info.alias, nested[0] if nested else None,
                    typing.get_origin(info.annotation) is dict))
    return out


@functools.cache
def _nested(cls: type[BaseModel], depth: int, in_dict: bool) -> st.SearchStrategy[Any]:
    # made once per model and depth, not at every draw (building strategies was a fifth of
    # generating the inputs); the values drawn are the same
    sub = data_for(cls, depth)
    return st.dictionaries(TEXT, sub, max_size=2) if in_dict else sub


@st.composite
def data_for(draw: st.DrawFn, cls: type[BaseModel], depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, alias, nested, in_dict in _fields(cls):
        if not draw(st.booleans()):
            continue
        key = alias if alias and draw(st.booleans()) else name
        if nested is not None and depth < 2 and draw(st.integers(0, 3)):
            out[key] = draw(_nested(nested, depth + 1, in_dict))
        else:
            out[key] = draw(VALUE)
    if draw(st.integers(0, 9)) == 0:
        out["stray"] = draw(VALUE)
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types, models compared field by field (and their fields set)."""
    if isinstance(a, BaseModel):
        return (type(a) is type(b) and a.model_fields_set == b.model_fields_set
                and a.__pydantic_private__ == b.__pydantic_private__
                and all(_same(getattr(a, n), getattr(b, n)) for n in type(a).model_fields))
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def _pydantic(cls: type[BaseModel], data: Any) -> BaseModel | None:
    try:
        return cls.__pydantic_validator__.validate_python(data)  # type: ignore[no-any-return]
    except ValidationError:
        return None


def _check(cls: type[BaseModel], data: dict[str, Any]) -> None:
    fast = plain.construct(cls, data)
    slow = _pydantic(cls, data)
    if fast is not None:
        assert slow is not None, f"plain accepted what pydantic refuses: {data!r}"
        assert _same(fast, slow), f"{data!r}: {fast!r} != {slow!r}"
    if slow is not None:
        for mode in ("python", "json"):
            for by_alias in (None, False, True):
                want = slow.__pydantic_serializer__.to_python(slow, mode=mode,
                                                             by_alias=by_alias)
                got = plain.dump(slow, mode=mode, by_alias=by_alias)
                assert got is None or _same(got, want), f"{data!r} {mode} {by_alias}"
                if fast is not None:
                    got = plain.dump(fast, mode=mode, by_alias=by_alias)
                    assert got is None or _same(got, want), f"{data!r} {mode} {by_alias}"


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_plain_gives_pydantic_s_answer_or_none(cls: type[BaseModel], data: st.DataObject
                                               ) -> None:
    _check(cls, data.draw(data_for(cls)))


VALID = [
    (models.Workstream, {"id": "a", "command": "echo a > a.txt", "timeout": 5, "retries": 2,
                         "depends_on": ["b"], "scope": {"allow": ["src/**"]},
                         "env": {"X": "1"}, "metadata": {"k": [1, 2.5, None]}, "estimate": 3}),
    (models.Workstream, {"id": "a", "command": ["sh", "-c", "true"], "tool": "claude",
                         "prompt": "p", "allow_empty": True}),
    (models.Config, {}),
    (models.Config, {"run": {"jobs": 2, "land": "never"}, "verify": {"window": 1, "jobs": 0},
                     "hooks": {"pre-merge": ["true"]}, "sandbox": {"mode": "none"},
                     "tools": {"t": {"command": "x {prompt_file}",
                                     "success": {"regex": "ok", "match": False}}},
                     "presets": {"claude": {"max_turns": 3}}, "executor": {"address": "local"}}),
    (models.VerifyConfig, {"window": "auto", "batch": 4}),
]


@pytest.mark.parametrize(("cls", "data"), VALID)
def test_plain_reads_the_common_input_itself(cls: type[BaseModel], data: dict[str, Any]) -> None:
    fast = plain.construct(cls, data)
    assert fast is not None, "plain input fell back to pydantic"
    _check(cls, data)
    assert plain.dump(fast, mode="json", by_alias=True) is not None


def test_the_models_use_plain_and_pydantic_words_the_errors() -> None:
    ws = models.Workstream.model_validate({"id": "a", "timeout": 5})
    assert ws.timeout == 5.0 and type(ws.timeout) is float
    with pytest.raises(ValidationError, match="must match"):
        models.Workstream.model_validate({"id": "A"})
    with pytest.raises(ValidationError, match="greater than 0"):
        models.Workstream(id="a", timeout=0)
    with pytest.raises(ValidationError, match="batch > 1 needs the verification queue"):
        models.VerifyConfig(window=1, batch=2)
