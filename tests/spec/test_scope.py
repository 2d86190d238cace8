"""Scope patterns: validation, matching, in_scope, and patterns_overlap (checked against brute
force enumeration of paths)."""

from __future__ import annotations

import fnmatch
import functools
import itertools

import pytest

from uet_git.spec.models import Scope
from uet_git.spec.scope import (
    component_overlap,
    in_scope,
    matches,
    out_of_scope,
    patterns_overlap,
    validate_pattern,
)


@pytest.mark.parametrize(
    "pattern",
    ["src/a.py", "src/", "src/**", "**/*.py", "*.md", "docs/**/index.md", "a/b/c/", "[a-c]x?.txt",
     ".github/workflows/", ".gitignore", ".gitkeep", "x.git", "git/", "sub/.gitmodules", "**",
     "a b/c d.txt", "ünïcode/é.md"],
)
def test_valid_patterns(pattern: str) -> None:
    assert validate_pattern(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("C:/x", "absolute"),
        ("../x", "'..'"),
        ("a/../b", "'..'"),
        ("a/..", "'..'"),
        ("./a", "'.'"),
        ("a//b", "empty path component"),
        (".git/config", ".git"),
        (".git/", ".git"),
        (".git", ".git"),
        ("**/.git/**", ".git"),
        ("sub/.GIT/hooks", ".git"),
        ("a\\b", "backslash"),
        ("a\nb", "control"),
        ("a\x00b", "control"),
        ("src/**.py", "whole component"),
        ("x" * 5000, "longer than"),
    ],
)
def test_refused_patterns(pattern: str, problem: str) -> None:
    msg = validate_pattern(pattern)
    assert msg is not None and problem in msg
    assert "\n" not in msg and len(msg) < 300


def test_non_string_pattern() -> None:
    assert validate_pattern(3) == "must be a string, got int"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("src/a.py", "src/a.py", True),
        ("src/a.py", "src/a.pyc", False),
        ("src/a.py", "x/src/a.py", False),
        ("*.py", "setup.py", True),
        ("*.py", "src/a.py", False),  # * does not cross /
        ("src/*.py", "src/a.py", True),
        ("src/*.py", "src/sub/a.py", False),
        ("src/**/*.py", "src/a.py", True),  # ** spans zero directories
        ("src/**/*.py", "src/x/y/z.py", True),
        ("src/**/*.py", "lib/src/a.py", False),
        ("**/*.py", "a.py", True),
        ("**/*.py", "a/b/c.py", True),
        ("**/test_*.py", "tests/test_x.py", True),
        ("src/", "src/a.py", True),
        ("src/", "src/deep/er/a.py", True),
        ("src/", "src", False),  # dir/ means everything BELOW
        ("src/", "srcx/a.py", False),
        ("src/**", "src/a", True),
        ("src/**", "src", False),
        ("**", "anything/at/all.txt", True),
        ("**", ".git/config", False),  # never into .git
        ("**", "sub/.git/HEAD", False),
        ("src/", "src/.git/x", False),
        ("?.md", "a.md", True),
        ("?.md", "ab.md", False),
        ("[ab].md", "b.md", True),
        ("[ab].md", "c.md", False),
        ("[!ab].md", "c.md", True),
        ("[!ab].md", "a.md", False),
        ("[a-c]x", "bx", True),
        ("[a-c]x", "dx", False),
        ("[x", "[x", True),  # an unclosed [ is literal
        ("a+b(c).txt", "a+b(c).txt", True),  # regex metacharacters are literal
        ("Readme.md", "README.md", False),  # case-sensitive
        ("*", ".hidden", True),
        ("docs/*.md", "docs/.md", True),
        ("a/**/b/**/c", "a/b/c", True),
        ("a/**/b/**/c", "a/x/b/y/z/c", True),
        ("a/**/b/**/c", "a/x/c", False),
        ("src/a.py", "./src/a.py", True),
        ("src/a.py", "/src/a.py", False),
        ("src/*", "src/../etc/passwd", False),
        ("../x", "../x", False),  # invalid patterns match nothing
    ],
)
def test_matches(pattern: str, path: str, expected: bool) -> None:
    assert matches(pattern, path) is expected


@pytest.mark.parametrize(
    "pat", ["*", "*.py", "?x*", "[ab]*", "[!a]?", "a*b*c", "*[0-9]", "[]]x", "[!]]", "x[a-c-]"]
)
def test_single_component_agrees_with_fnmatchcase(pat: str) -> None:
    names = ["a", "ab", "x.py", "abc", "a1", "]x", "-", "axbyc", "x-", "xb", ".py", "9"]
    assert [n for n in names if matches(pat, n) is not fnmatch.fnmatchcase(n, pat)] == []


def test_in_scope() -> None:
    scope = Scope(allow=["src/", "README.md"], deny=["src/secrets.py", "src/**/*.pem"])
    assert in_scope(scope, "src/app.py")
    assert in_scope(scope, "README.md")
    assert not in_scope(scope, "src/secrets.py")  # deny wins
    assert not in_scope(scope, "src/k/key.pem")
    assert not in_scope(scope, "setup.py")
    assert out_of_scope(scope, ["src/a.py", "x.txt", "src/secrets.py"]) == [
        "x.txt", "src/secrets.py"
    ]


def test_empty_allow_allows_everything_but_deny_and_git() -> None:
    scope = Scope(deny=["vendor/"])
    assert in_scope(scope, "any/where.c")
    assert not in_scope(scope, "vendor/lib.c")
    assert not in_scope(scope, ".git/config")


# -- overlap ---------------------------------------------------------------------------------

OVERLAPS = [
    # (a, b, overlaps?)
    ("src/a.py", "src/a.py", True),
    ("src/a.py", "src/b.py", False),
    ("src/a.py", "src/*.py", True),
    ("src/a.py", "src/", True),
    ("src/a.py", "**", True),
    ("*.py", "src/*.py", False),  # top level vs one level down
    ("*.py", "**/*.py", True),
    ("src/", "src/**/*.py", True),
    ("src/", "lib/", False),
    ("src/", "src/sub/", True),
    ("src/", "src", False),
    ("src/*.py", "src/*.txt", False),
    ("src/*.py", "src/test_*", True),
    ("src/**/test_*.py", "src/pkg/*.py", True),
    ("docs/*.md", "docs/api/*.md", False),
    ("**/*.md", "**/*.py", False),
    ("**/a/**", "**/b/**", True),  # a/b/x
    ("a/**/b", "**/c", False),
    ("a/**/b", "a/b", True),
    ("[ab].py", "[bc].py", True),
    ("[ab].py", "[cd].py", False),
    ("[!a].py", "a.py", False),
    ("?.py", "ab.py", False),
    ("??.py", "a*.py", True),
    ("*", "*", True),
    ("**", "**", True),
    (".*", "*", True),
    ("[.]?", ".?", True),
    ("config/patch_policies/*.json", "config/", True),
    ("README.md", "docs/", False),
    ("../x", "**", False),  # invalid patterns overlap nothing
]


@pytest.mark.parametrize(("a", "b", "expected"), OVERLAPS)
def test_patterns_overlap(a: str, b: str, expected: bool) -> None:
    for x, y in ((a, b), (b, a)):
        example = patterns_overlap(x, y)
        assert (example is not None) is expected, (x, y, example)
        if example is not None:
            assert matches(x, example) and matches(y, example), (x, y, example)


def test_overlap_examples_are_readable() -> None:
    assert patterns_overlap("config/patch_policies/*.json", "config/") == (
        "config/patch_policies/x.json"
    )
    assert patterns_overlap("src/", "src/**/*.py") == "src/x.py"
    assert patterns_overlap("**", "docs/a.md") == "docs/a.md"


def test_component_overlap_steers_around_forbidden_names() -> None:
    # '.' , '..' and '.git' are never valid components, so the search must find another name
    assert component_overlap("[.]*", "?") is None  # only '.' would do
    assert component_overlap(".*", ".?") not in (None, ".", "..")
    assert component_overlap(".git*", "*") not in (None, ".git")
    assert component_overlap("[.][gG][iI][tT]", "*") is None


# Brute force: every path of up to 3 components over a small alphabet that exercises dots,
# extensions, prefixes and the directory names used in the patterns below.
_NAMES = ["a", "b", "c", "src", "docs", "x.py", "a.py", "test_a.py", "ab.py", ".h", "y.md", "sub"]
_PATHS = [
    "/".join(p) for n in (1, 2, 3) for p in itertools.product(_NAMES, repeat=n)
]
_PATTERNS = [
    "src/", "src/*.py", "*.py", "**/*.py", "**", "src/**/test_*.py", "docs/*.md", "a/**/b",
    "**/a/**", "[ab].py", "?.py", "sub/", "*/*", "*/src/*", "**/sub/*.md", "a/b/c", ".*",
    "src/**", "[!a]*.py", "**/b",
]


@functools.cache
def _matched(pattern: str) -> frozenset[str]:
    # each pattern is matched against every path once, not once per pair it is in
    return frozenset(p for p in _PATHS if matches(pattern, p))


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations_with_replacement(_PATTERNS, 2)))
def test_overlap_agrees_with_brute_force(a: str, b: str) -> None:
    example = patterns_overlap(a, b)
    common = sorted(_matched(a) & _matched(b))
    if example is None:
        assert not common, (a, b, common[:3])
    else:
        assert matches(a, example) and matches(b, example)
