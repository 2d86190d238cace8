"""Scope patterns: repository-relative globs, matched by uet itself (not fnmatch, not git).

Syntax (one pattern = components separated by ``/``):
- ``*`` matches any run of characters inside one component (it never crosses ``/``), ``?`` one
  character, ``[abc]`` / ``[a-z]`` / ``[!abc]`` one character of (or not of) a set; an unclosed
  ``[`` is a literal. Matching is case-sensitive, as git is on Linux.
- ``**`` as a whole component matches zero or more components (``src/**/test_*.py`` matches
  ``src/test_a.py`` and ``src/x/y/test_a.py``); a trailing ``/**`` needs at least one component
  (``src/**`` matches what is below ``src``, not a file named ``src``). ``**`` inside a
  component (``src/**.py``) is refused, since it almost always meant ``src/**/*.py``.
- A trailing ``/`` means everything below: ``docs/`` is ``docs/**``.
- A pattern without ``/`` is anchored at the top: ``*.py`` matches ``setup.py`` but not
  ``src/a.py`` (unlike .gitignore). Write ``**/*.py`` for every depth.

Refused (``validate_pattern`` says why): empty patterns, absolute paths (``/x``, ``C:/x``), ``.``
and ``..`` components, empty components (``a//b``), backslashes, control characters, ``**``
inside a component, and any component that is literally ``.git`` (any case). A path with a
``.git`` component never matches anything, whatever the pattern (so ``**`` cannot reach into it).

``patterns_overlap(a, b)`` returns an example path matched by both patterns, or None when none
exists. It is exact for the syntax above (a product of the two patterns' automata), with these
limits: character sets are decided over ASCII plus the characters the patterns name, so two
negated sets that only share characters outside those (``[!a]`` vs ``[!b]`` still works; sets
made only of exotic ranges may not) could be missed; and case-insensitive file systems, where
``A.py`` and ``a.py`` are one file, are not considered.
"""

from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Protocol


class Scope(Protocol):
    """What matching needs of a workstream's scope (``spec.models.Scope`` has it): the models
    import this module for pattern validation, so this module does not import them."""

    @property
    def allow(self) -> Sequence[str]: ...

    @property
    def deny(self) -> Sequence[str]: ...


MAX_PATTERN = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_pattern(p: object) -> str | None:
    """The problem with scope pattern ``p``, or None when it is valid."""
    if not isinstance(p, str):
        return f"must be a string, got {type(p).__name__}"
    if not p:
        return "empty pattern"
    if len(p) > MAX_PATTERN:
        return f"longer than {MAX_PATTERN} characters"
    if _CONTROL.search(p):
        return f"{_show(p)}: control characters are not allowed"
    if "\\" in p:
        return f"{_show(p)}: backslash; separate directories with '/'"
    if p.startswith("/") or re.match(r"^[A-Za-z]:", p):
        return f"{_show(p)}: absolute path; patterns are relative to the repository root"
    comps = p[:-1].split("/") if p.endswith("/") else p.split("/")
    for c in comps:
        if c == "":
            return f"{_show(p)}: empty path component ('//')"
        if c in (".", ".."):
            return f"{_show(p)}: {c!r} component; patterns are relative to the repository root"
        if c.lower() == ".git":
            return f"{_show(p)}: reaches into .git/"
        if "**" in c and c != "**":
            hint = "**/" + c.replace("**", "*")
            return f"{_show(p)}: '**' must be a whole component (did you mean {hint!r}?)"
    return None


def _show(p: str, n: int = 80) -> str:
    """A pattern quoted for a one-line message: repr escapes control characters."""
    return repr(p if len(p) <= n else p[:n] + "...")


# -- component globs -------------------------------------------------------------------------

# A token of a component glob: ("lit", char) | ("any",) | ("star",) | ("set", negated, ranges)
Token = tuple


@functools.lru_cache(maxsize=4096)
def _tokens(comp: str) -> tuple[Token, ...]:
    out: list[Token] = []
    i, n = 0, len(comp)
    while i < n:
        c = comp[i]
        if c == "*":
            if not out or out[-1] != ("star",):  # ** inside a component == *
                out.append(("star",))
            i += 1
        elif c == "?":
            out.append(("any",))
            i += 1
        elif c == "[":
            parsed = _parse_set(comp, i)
            if parsed is None:
                out.append(("lit", "["))
                i += 1
            else:
                tok, i = parsed
                out.append(tok)
        else:
            out.append(("lit", c))
            i += 1
    return tuple(out)


def _parse_set(s: str, i: int) -> tuple[Token, int] | None:
    """Parse ``[...]`` at ``s[i]``; None if it is not closed (then ``[`` is literal)."""
    j = i + 1
    neg = False
    if j < len(s) and s[j] in "!^":
        neg = True
        j += 1
    ranges: list[tuple[str, str]] = []
    first = True
    while j < len(s):
        c = s[j]
        if c == "]" and not first:
            return ("set", neg, tuple(ranges)), j + 1
        first = False
        if j + 2 < len(s) and s[j + 1] == "-" and s[j + 2] != "]":
            lo, hi = c, s[j + 2]
            if lo <= hi:
                ranges.append((lo, hi))
            j += 3
        else:
            ranges.append((c, c))
            j += 1
    return None


def _accepts(tok: Token, ch: str) -> bool:
    """Whether the single-character token ``tok`` accepts ``ch`` (never ``/``)."""
    if ch == "/":
        return False
    kind = tok[0]
    if kind == "lit":
        return bool(tok[1] == ch)
    if kind in ("any", "star"):
        return True
    inside = any(lo <= ch <= hi for lo, hi in tok[2])
    return inside != tok[1]


@functools.lru_cache(maxsize=4096)
def _component_regex(comp: str) -> re.Pattern[str]:
    parts: list[str] = []
    for tok in _tokens(comp):
        kind = tok[0]
        if kind == "lit":
            parts.append(re.escape(tok[1]))
        elif kind == "any":
            parts.append("[^/]")
        elif kind == "star":
            parts.append("[^/]*")
        else:
            body = "".join(
                re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}"
                for lo, hi in tok[2]
            )
            if tok[1]:
                parts.append(f"[^/{body}]")
            else:
                parts.append(f"[{body}]" if body else "(?!)")
    return re.compile("".join(parts), re.DOTALL)


# -- path patterns ---------------------------------------------------------------------------

STARSTAR = "**"


@functools.lru_cache(maxsize=4096)
def _components(pattern: str) -> tuple[str, ...]:
    """The pattern as components, with ``dir/`` and a trailing ``**`` made explicit as
    ``* / **`` (at least one component below)."""
    comps = [*pattern[:-1].split("/"), STARSTAR] if pattern.endswith("/") else pattern.split("/")
    out: list[str] = []
    for c in comps:
        if c == STARSTAR and out and out[-1] == STARSTAR:
            continue
        out.append(c)
    if len(out) > 1 and out[-1] == STARSTAR:
        out[-1:] = ["*", STARSTAR]
    return tuple(out)


def _path_components(path: str) -> list[str] | None:
    p = path[2:] if path.startswith("./") else path
    p = p.rstrip("/")
    if not p or p.startswith("/"):
        return None
    comps = p.split("/")
    for c in comps:
        if c in ("", ".", "..") or c.lower() == ".git":
            return None
    return comps


def matches(pattern: str, path: str) -> bool:
    """Whether the repository-relative ``path`` (a file) matches ``pattern``. An invalid
    pattern matches nothing; a path with a ``.git``, ``.`` or ``..`` component never matches."""
    pat = _valid_components(pattern)
    if pat is None:
        return False
    comps = _path_components(path)
    if comps is None:
        return False
    return _match(pat, tuple(comps))


def _valid_components(pattern: object) -> tuple[str, ...] | None:
    # A scope is checked against every changed path of a patch: its patterns are validated
    # and split once, not once per path.
    if not isinstance(pattern, str):
        return None
    return _compiled(pattern)


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> tuple[str, ...] | None:
    return None if validate_pattern(pattern) is not None else _components(pattern)


def _match(pat: tuple[str, ...], comps: tuple[str, ...]) -> bool:
    # reach[j]: pattern prefix consumed so far can match comps[:j]
    reach = {0}
    for pc in pat:
        if not reach:
            return False
        if pc == STARSTAR:
            lo = min(reach)
            reach = set(range(lo, len(comps) + 1))
        else:
            rx = _component_regex(pc)
            reach = {j + 1 for j in reach if j < len(comps) and rx.fullmatch(comps[j])}
    return len(comps) in reach


def in_scope(scope: Scope, path: str) -> bool:
    """Whether ``path`` may be changed under ``scope``: an empty ``allow`` allows every path,
    ``deny`` wins over ``allow``; ``.git`` paths are never in scope."""
    found = _path_components(path)
    if found is None:
        return False
    comps = tuple(found)
    if any(_matches_components(p, comps) for p in scope.deny):
        return False
    if not scope.allow:
        return True
    return any(_matches_components(p, comps) for p in scope.allow)


def _matches_components(pattern: str, comps: tuple[str, ...]) -> bool:
    pat = _valid_components(pattern)
    return pat is not None and _match(pat, comps)


def out_of_scope(scope: Scope, paths: Iterable[str]) -> list[str]:
    """The paths of ``paths`` that ``scope`` does not allow, in order."""
    return [p for p in paths if not in_scope(scope, p)]


# -- overlap ---------------------------------------------------------------------------------

_FORBIDDEN = (".", "..", ".git")
_TRACKED = frozenset(".gitGIT")
_PREFIXES = frozenset(w[:k] for w in _FORBIDDEN for k in range(len(w) + 1))
_FREE = None  # tracker state: the component can no longer be a forbidden name


def _candidates(a: Token, b: Token) -> list[str]:
    """Characters worth trying for a transition on tokens ``a`` and ``b``: one ordinary
    character accepted by both (if any), plus each character that could spell a forbidden
    component name (``.``, ``..``, ``.git``), so that the search can steer around them."""
    pool: list[str] = list("xay0_-")
    for tok in (a, b):
        if tok[0] == "lit":
            pool.append(tok[1])
        elif tok[0] == "set":
            for lo, hi in tok[2]:
                for ch in (lo, hi):
                    pool.append(ch)
                    if ord(ch) > 0:
                        pool.append(chr(ord(ch) - 1))
                    pool.append(chr(ord(ch) + 1))
    pool.extend(chr(c) for c in range(33, 127))
    out: list[str] = []
    plain_found = False
    for ch in pool:
        if ch in out or not ch.isprintable() or not (_accepts(a, ch) and _accepts(b, ch)):
            continue
        if ch in _TRACKED:
            out.append(ch)
        elif not plain_found:
            out.append(ch)
            plain_found = True
    return out


def _closure(toks: tuple[Token, ...], i: int) -> list[int]:
    """NFA epsilon closure: a ``*`` may match nothing."""
    out = [i]
    while i < len(toks) and toks[i][0] == "star":
        i += 1
        out.append(i)
    return out


def _moves(toks: tuple[Token, ...], i: int) -> list[tuple[Token, int]]:
    """(token consumed, next state) for each non-epsilon move from state ``i``."""
    out: list[tuple[Token, int]] = []
    for s in _closure(toks, i):
        if s < len(toks):
            tok = toks[s]
            out.append((tok, s if tok[0] == "star" else s + 1))
    return out


def _filled(comp: str) -> str:
    """A readable instance of a component glob: wildcards and sets filled with one letter."""
    out: list[str] = []
    for tok in _tokens(comp):
        if tok[0] == "lit":
            out.append(tok[1])
        elif tok[0] == "set":
            ch = next((c for c in _candidates(tok, ("any",)) if c not in _TRACKED), None)
            out.append(ch or next(iter(_candidates(tok, ("any",))), "x"))
        else:
            out.append("x")
    return "".join(out)


@functools.lru_cache(maxsize=8192)
def component_overlap(a: str, b: str) -> str | None:
    """A non-empty component name (no ``/``, never ``.``, ``..`` or ``.git``) matched by both
    component globs, or None. A filled-in instance of either glob is preferred (``x.json``
    rather than ``.json`` for ``*.json`` vs ``*``); otherwise a breadth-first search over the
    product of the two globs' automata finds a shortest one."""
    for guess in (_filled(a), _filled(b)):
        if (
            guess
            and guess.lower() not in _FORBIDDEN
            and _component_regex(a).fullmatch(guess)
            and _component_regex(b).fullmatch(guess)
        ):
            return guess
    ta, tb = _tokens(a), _tokens(b)
    start = (0, 0, "")
    prev: dict[tuple[int, int, str | None], tuple[tuple[int, int, str | None], str] | None] = {
        start: None
    }
    queue = deque([start])
    while queue:
        state = queue.popleft()
        i, j, tracker = state
        if (
            len(ta) in _closure(ta, i)
            and len(tb) in _closure(tb, j)
            and state != start
            and (tracker is _FREE or tracker.lower() not in _FORBIDDEN)
        ):
            chars: list[str] = []
            cur: tuple[int, int, str | None] | None = state
            while cur is not None and prev[cur] is not None:
                link = prev[cur]
                assert link is not None
                cur, ch = link
                chars.append(ch)
            return "".join(reversed(chars))
        for tok_a, ni in _moves(ta, i):
            for tok_b, nj in _moves(tb, j):
                for ch in _candidates(tok_a, tok_b):
                    if tracker is _FREE:
                        nt: str | None = _FREE
                    else:
                        word = tracker + ch
                        nt = word if word.lower() in _PREFIXES else _FREE
                    nxt = (ni, nj, nt)
                    if nxt not in prev:
                        prev[nxt] = (state, ch)
                        queue.append(nxt)
    return None


def patterns_overlap(a: str, b: str) -> str | None:
    """An example repository path matched by both patterns, or None when no path is.

    ``src/`` vs ``src/**/*.py`` -> ``src/x.py``; ``*.py`` vs ``src/*.py`` -> None (``*`` stays at
    the top level); ``**`` vs ``docs/a.md`` -> ``docs/a.md``. Invalid patterns overlap nothing.
    The example satisfies ``matches`` for both patterns. Limits: see the module docstring."""
    if validate_pattern(a) is not None or validate_pattern(b) is not None:
        return None
    pa, pb = _components(a), _components(b)

    @functools.cache
    def walk(i: int, j: int, nonempty: bool) -> tuple[str, ...] | None:
        if i == len(pa) and j == len(pb):
            return () if nonempty else None
        a_star = i < len(pa) and pa[i] == STARSTAR
        b_star = j < len(pb) and pb[j] == STARSTAR
        if a_star:
            r = walk(i + 1, j, nonempty)
            if r is not None:
                return r
        if b_star:
            r = walk(i, j + 1, nonempty)
            if r is not None:
                return r
        if i == len(pa) or j == len(pb):
            return None
        if a_star and b_star:
            comp = component_overlap("*", "*")
            ni, nj = i, j + 1
        elif a_star:
            comp = component_overlap("*", pb[j])
            ni, nj = i, j + 1
        elif b_star:
            comp = component_overlap(pa[i], "*")
            ni, nj = i + 1, j
        else:
            comp = component_overlap(pa[i], pb[j])
            ni, nj = i + 1, j + 1
        if comp is None:
            return None
        rest = walk(ni, nj, True)
        return None if rest is None else (comp, *rest)

    found = walk(0, 0, False)
    return None if found is None else "/".join(found)
