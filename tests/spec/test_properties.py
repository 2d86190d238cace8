"""Property-based tests: workstreams round-trip through every file format, invalid input is
always one-line errors (never an exception), and scope matching agrees with brute force."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uet_git.spec.load import load_workstreams
from uet_git.spec.models import Workstream, check_id, env_problem
from uet_git.spec.scope import STARSTAR, matches, validate_pattern

# No example database: it would be a .hypothesis/ directory in the working tree.
FAST = settings(max_examples=25, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

# -- generated workstreams -----------------------------------------------------------------

_ID_HEAD = "abcxyz019"
_ID_TAIL = "abcxyz019._-"
ids = st.builds(lambda h, t: h + t, st.sampled_from(_ID_HEAD),
                st.text(_ID_TAIL, max_size=12)).filter(lambda s: _valid_id(s))
# Text a user may write: any printable or whitespace character (not surrogates, which no file
# format can hold), including quotes, backslashes, '#', ':' and non-ASCII.
texts = st.text(st.characters(blacklist_categories=("Cs", "Cc"), whitelist_characters="\n\t"),
                max_size=30)
names = st.text("abc.-_", min_size=1, max_size=4).filter(
    lambda c: c not in (".", "..") and c.lower() != ".git" and "**" not in c)
patterns = st.builds(
    lambda comps, tail: "/".join(comps) + tail,
    st.lists(st.one_of(names, st.sampled_from(["*", "*.py", "?", "[ab]*", STARSTAR])),
             min_size=1, max_size=3),
    st.sampled_from(["", "/"]),
).filter(lambda p: validate_pattern(p) is None)
env_names = st.from_regex(r"[A-Z][A-Z0-9_]{0,10}", fullmatch=True).filter(
    lambda n: env_problem(n) is None)


def _valid_id(s: str) -> bool:
    try:
        check_id(s)
    except ValueError:
        return False
    return True


@st.composite
def workstreams(draw: st.DrawFn) -> dict[str, Any]:
    ws: dict[str, Any] = {"id": draw(ids)}
    optional = {
        "title": texts,
        "depends_on": st.lists(ids, max_size=3, unique=True),  # duplicates: a warning
        "tool": st.sampled_from(["shell", "aider", "claude", "codex", "my-tool"]),
        "command": st.one_of(texts, st.lists(texts, min_size=1, max_size=3)),
        "prompt": texts,
        "scope": st.fixed_dictionaries({}, optional={"allow": st.lists(patterns, max_size=3),
                                                     "deny": st.lists(patterns, max_size=2)}),
        "acceptance": st.lists(texts, max_size=2),
        "setup": st.lists(texts, max_size=2),
        "timeout": st.one_of(st.integers(1, 10**6), st.floats(0.5, 1e6, allow_nan=False)),
        "retries": st.integers(0, 20),
        "env": st.dictionaries(env_names, texts, max_size=3),
        "estimate": st.floats(0.1, 1e5, allow_nan=False),
        "allow_empty": st.booleans(),
        "may_change_checks": st.booleans(),
    }
    for key, strat in optional.items():
        if draw(st.booleans()):
            ws[key] = draw(strat)
    return ws


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        # A JSON string is a TOML basic string once DEL is escaped (TOML forbids it raw).
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def _dump(fmt: str, data: dict[str, Any]) -> str:
    if fmt == "yaml":
        return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    if fmt == "json":
        return json.dumps(data, ensure_ascii=False)
    return "".join(f"{k} = {_toml_value(v)}\n" for k, v in data.items())


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One directory for every example's file, rewritten each time: the loader is given the
    # file itself (a file beside it is never read), and a temporary directory made and
    # removed per example was a sixth of these tests.
    return tmp_path_factory.mktemp("spec-files")


def _load_text(scratch: Path, name: str, text: str):
    f = scratch / name
    f.write_text(text, encoding="utf-8")
    return load_workstreams([f])


@FAST
@given(workstreams(), st.sampled_from(["yaml", "json", "toml"]))
def test_valid_workstreams_round_trip(scratch: Path, data: dict[str, Any], fmt: str) -> None:
    expected = Workstream.model_validate(data).model_dump()
    result = _load_text(scratch, f"ws.{fmt}", _dump(fmt, data))
    assert [str(e) for e in result.errors] == []
    assert [ws.model_dump() for ws in result.workstreams] == [expected]


@FAST
@given(st.lists(workstreams(), min_size=2, max_size=4, unique_by=lambda w: w["id"]),
       st.sampled_from(["yaml", "json"]))
def test_lists_of_workstreams_round_trip(scratch: Path, items: list[dict[str, Any]], fmt: str
                                        ) -> None:
    text = yaml.safe_dump(items, allow_unicode=True) if fmt == "yaml" else json.dumps(items)
    result = _load_text(scratch, f"ws.{fmt}", text)
    assert [str(e) for e in result.errors] == []
    assert [ws.id for ws in result.workstreams] == [w["id"] for w in items]


bad_text_ids = st.text(max_size=120).filter(lambda s: not _valid_id(s))
bad_ids = st.one_of(
    bad_text_ids,
    st.integers(), st.floats(allow_nan=True), st.none(), st.booleans(),
    st.lists(st.text(max_size=3), max_size=2), st.dictionaries(st.text(max_size=3),
                                                              st.integers(), max_size=2),
)


def _one_line_errors(result) -> None:
    assert result.errors
    for e in result.errors:
        line = str(e)
        assert "\n" not in line and "\r" not in line, line
        line.encode("utf-8")


@FAST
@given(bad_ids, st.sampled_from(["yaml", "json"]))
def test_invalid_ids_are_one_line_errors(scratch: Path, bad: Any, fmt: str) -> None:
    data = {"id": bad, "command": "true"}
    if fmt == "yaml":
        text = yaml.safe_dump(data, allow_unicode=True)
    else:
        text = json.dumps(data, ensure_ascii=False).replace("\ud800", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return  # a lone surrogate cannot be in a file
    _one_line_errors(_load_text(scratch, f"ws.{fmt}", text))


@FAST
@given(bad_text_ids)
def test_invalid_ids_in_toml_and_dependencies(scratch: Path, bad: str) -> None:
    try:
        bad.encode("utf-8")
    except UnicodeEncodeError:
        return
    _one_line_errors(_load_text(scratch, "ws.toml", f"id = {_toml_value(bad)}\ncommand = 'true'\n"))
    _one_line_errors(_load_text(scratch, "ws.json", json.dumps(
        {"id": "ok", "command": "true", "depends_on": ["fine", bad]})))


@FAST
@given(st.binary(max_size=200), st.sampled_from(["yaml", "json", "toml"]))
def test_arbitrary_bytes_never_raise(scratch: Path, data: bytes, fmt: str) -> None:
    f = scratch / f"ws.{fmt}"
    f.write_bytes(data)
    result = load_workstreams([f])
    for e in [*result.errors, *result.warnings]:
        assert "\n" not in str(e)


# -- scope matching against brute force -----------------------------------------------------


def brute_match(pattern: str, path: str) -> bool:
    """The scope syntax by its definition, by backtracking: components matched one by one with
    fnmatch; ``dir/`` is ``dir/**``; ``**`` spans zero or more components, at least one when
    it ends a pattern of several components; invalid patterns and ``.git``/``.``/``..``
    components match nothing; a path may be written ``./path``."""
    if validate_pattern(pattern) is not None:
        return False
    comps = path.removeprefix("./").split("/")
    if any(c in ("", ".", "..") or c.lower() == ".git" for c in comps):
        return False
    pat = [*pattern[:-1].split("/"), STARSTAR] if pattern.endswith("/") else pattern.split("/")

    def go(i: int, j: int) -> bool:
        if i == len(pat):
            return j == len(comps)
        if pat[i] == STARSTAR:
            least = 1 if i == len(pat) - 1 and len(pat) > 1 else 0
            return any(go(i + 1, k) for k in range(j + least, len(comps) + 1))
        return j < len(comps) and fnmatch.fnmatchcase(comps[j], pat[i]) and go(i + 1, j + 1)

    return go(0, 0)


_PCOMP = st.lists(st.sampled_from(["a", "b", ".", "*", "?", "[ab]", "[!a]", "[a-b]"]),
                  min_size=1, max_size=3).map("".join)
scope_patterns = st.builds(
    lambda comps, tail: "/".join(comps) + tail,
    st.lists(st.one_of(_PCOMP, st.just(STARSTAR)), min_size=1, max_size=4),
    st.sampled_from(["", "", "/"]),
)
scope_paths = st.lists(st.text("ab.", min_size=1, max_size=3), min_size=1,
                       max_size=4).map("/".join)


@settings(max_examples=400, deadline=None, database=None)
@given(scope_patterns, scope_paths)
def test_matches_agrees_with_brute_force(pattern: str, path: str) -> None:
    assert matches(pattern, path) is brute_match(pattern, path), (pattern, path)


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.filter_too_much])
@given(scope_patterns.filter(lambda p: validate_pattern(p) is None), scope_paths)
def test_valid_patterns_agree_with_brute_force(pattern: str, path: str) -> None:
    assert matches(pattern, path) is brute_match(pattern, path), (pattern, path)
