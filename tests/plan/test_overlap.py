"""Conflict prediction between workstreams the DAG does not order."""

from __future__ import annotations

import random

from uet_git.plan.dag import build_plan
from uet_git.plan.overlap import ancestor_bits, predict_conflicts
from uet_git.spec.models import Scope, Workstream
from uet_git.spec.scope import matches, patterns_overlap, validate_pattern


def ws(id: str, allow: list[str], *deps: str) -> Workstream:
    return Workstream(id=id, depends_on=list(deps), scope={"allow": allow})


def warn(*wss: Workstream) -> list[str]:
    items = list(wss)
    return predict_conflicts(build_plan(items), items)


def test_literal_literal_same_file():
    assert warn(ws("ws-a", ["src/app.py"]), ws("ws-b", ["src/app.py", "README.md"])) == [
        "ws-a and ws-b may conflict: both may change src/app.py (add depends_on: [ws-a] to ws-b)"
    ]


def test_different_literals_do_not_warn():
    assert warn(ws("a", ["src/a.py"]), ws("b", ["src/b.py"]), ws("c", ["src"])) == []


def test_glob_glob_overlap():
    out = warn(ws("a", ["src/**/*.py"]), ws("b", ["src/core/test_*"]))
    assert len(out) == 1
    assert out[0].startswith("a and b may conflict: both may change src/core/test_")
    assert out[0].endswith(".py (add depends_on: [a] to b)")


def test_glob_glob_disjoint():
    assert warn(ws("a", ["src/*.py"]), ws("b", ["src/*.js"]), ws("c", ["*.py"]),
                ws("d", ["docs/**"])) == []


def test_dir_glob_overlap():
    out = warn(ws("a", ["docs/"]), ws("b", ["**/*.md"]))
    assert len(out) == 1
    assert out[0].startswith("a and b may conflict: both may change docs/")
    path = out[0].split("both may change ")[1].split(" ")[0]
    assert path.endswith(".md")
    assert patterns_overlap("docs/", "**/*.md") is not None


def test_dir_literal_overlap():
    assert warn(ws("a", ["lib/"]), ws("b", ["lib/x/y.c"])) == [
        "a and b may conflict: both may change lib/x/y.c (add depends_on: [a] to b)"
    ]


def test_invalid_patterns_overlap_nothing():
    # The models refuse these; objects built without validation must not produce warnings.
    def raw(id: str, allow: list[str]) -> Workstream:
        return Workstream.model_construct(id=id, scope=Scope.model_construct(allow=allow, deny=[]))

    assert warn(raw("a", ["src/\x01"]), ws("b", ["**"]), raw("c", ["/etc/passwd"])) == []


def test_ordered_pair_does_not_warn():
    assert warn(ws("a", ["src/app.py"]), ws("b", ["src/app.py"], "a")) == []


def test_transitively_ordered_pair_does_not_warn():
    assert warn(ws("a", ["src/app.py"]), ws("m", ["other.txt"], "a"),
                ws("b", ["src/app.py"], "m")) == []


def test_sibling_branches_warn_but_not_ancestors():
    # root -> x, root -> y: x and y are unordered; both are ordered with root.
    out = warn(ws("root", ["f"]), ws("x", ["f"], "root"), ws("y", ["f"], "root"))
    assert out == ["x and y may conflict: both may change f (add depends_on: [x] to y)"]


def test_suggestion_follows_topological_order_and_output_is_sorted():
    # Order: c, y, b, d. "c" comes before "b" in topological order (b waits for y), so it is
    # named first and suggested as the dependency although "b" sorts before it by name.
    items = [ws("y", ["y.txt"]), ws("b", ["s.txt"], "y"), ws("c", ["s.txt", "t.txt"]),
             ws("d", ["t.txt"], "y")]
    assert build_plan(items).ids == ["c", "y", "b", "d"]
    assert warn(*items) == [
        "c and b may conflict: both may change s.txt (add depends_on: [c] to b)",
        "c and d may conflict: both may change t.txt (add depends_on: [c] to d)",
    ]


def test_one_warning_per_pair_with_the_smallest_pattern_pair():
    out = warn(ws("a", ["x/1", "x/2", "y/"]), ws("b", ["x/2", "x/1", "y/z"]))
    assert out == ["a and b may conflict: both may change x/1 (add depends_on: [a] to b)"]


def test_empty_allow_is_one_warning_per_workstream():
    out = warn(ws("any", []), ws("a", ["a.txt"]), ws("b", ["b.txt"]), ws("c", ["c"], "any"))
    assert out == [
        "any has no scope.allow, so it may change any path and may conflict with 2 "
        "workstreams the plan does not order with it (a, b); add scope.allow or depends_on"
    ]


def test_empty_allow_fully_ordered_is_silent():
    assert warn(ws("any", []), ws("a", ["a.txt"], "any")) == []


def test_empty_allow_many_lists_a_few():
    items = [ws("any", [])] + [ws(f"w{i}", [f"f{i}"]) for i in range(8)]
    (out,) = warn(*items)
    assert "may conflict with 8 workstreams" in out
    assert "(w0, w1, w2, w3, w4, ... (8 in all))" in out


def test_deterministic_regardless_of_input_order():
    rng = random.Random(3)
    items = [ws(f"w{i:02d}", [rng.choice(["a/", "a/*.py", "b/x", "**/x", "c/[ab].py", "c/a.py"])],
                *([f"w{rng.randrange(i):02d}"] if i and rng.random() < 0.3 else []))
             for i in range(40)]
    first = warn(*items)
    assert first
    for _ in range(3):
        rng.shuffle(items)
        assert warn(*items) == first


PATTERNS = [
    "src/", "src/a.py", "src/*.py", "src/**/x", "src/lib/b.py", "src/l*/b.py", "**", "**/*.md",
    "docs/a.md", "doc*/", "a?c/x", "abc/x", "src/[a-c]*.py", "src/b.py", "tests/test_*.py",
    "tests/", "x/**/y/*.txt", "x/q/y/z.txt", "src/lib/", "src/*_1.py", "src/*_2.py",
    "src/mod_1_*.py", "src/mod_1_x.py", "*.py", "setup.py", "src/**", "src/**/*.py",
    "src/[!a]*.py", "**/test_*.py", "a/**/b/**/c", "a/b/c", "a/x/b/y/c", "src/a*b.py",
    "src/ab.py", "src/a]b.py", "src/[ab]", "src/?", "src/x?y.py", "pkg/*/mod.py", "pkg/a/mod.py",
    "pkg/a/b/mod.py", "src/**/lib/", "src/lib/x/y.c",
]


def test_pruning_is_only_a_necessary_condition():
    """The key index and the cheap checks never hide an overlap patterns_overlap finds: two
    workstreams per pattern, none ordered, warn for exactly the pairs whose patterns
    patterns_overlap says overlap (a pattern with itself included), and each warning's path
    matches both patterns."""
    items = [ws(f"w{i:02d}-{k}", [p]) for i, p in enumerate(PATTERNS) for k in (0, 1)]
    got: dict[tuple[str, str], str] = {}
    for w in warn(*items):
        a, _, b = w.split(" may conflict")[0].partition(" and ")
        hit = w.split("both may change ", 1)[1].rsplit(" (add depends_on", 1)[0]
        assert (a, b) not in got, w
        got[(a, b)] = hit
    expected = set()
    for x in items:
        for y in items:
            if x.id < y.id and patterns_overlap(x.scope.allow[0], y.scope.allow[0]) is not None:
                expected.add((x.id, y.id))
    assert set(got) == expected
    for (a, b), hit in got.items():
        p, q = PATTERNS[int(a[1:3])], PATTERNS[int(b[1:3])]
        assert matches(p, hit) and matches(q, hit), (p, q, hit)
    found = {(a[:3], b[:3]) for a, b in got}
    assert len(found) > 2 * len(PATTERNS)  # real overlaps, not just the diagonal


def test_index_finds_every_overlapping_pair():
    items = [ws(f"w{i:02d}", [p]) for i, p in enumerate(PATTERNS)]
    out = warn(*items)
    expected = sum(
        1 for i, p in enumerate(PATTERNS) for q in PATTERNS[i + 1:]
        if patterns_overlap(p, q) is not None
    )
    assert len(out) == expected > 0


def test_ancestor_bits():
    plan = build_plan([ws("a", []), ws("b", [], "a"), ws("c", [], "b"), ws("d", [])])
    anc = ancestor_bits(plan)
    idx = plan.index
    assert anc[idx["c"]] == (1 << idx["a"]) | (1 << idx["b"])
    assert anc[idx["d"]] == 0


def test_thousand_workstreams_scale():
    # 1,000 workstreams over 100 directories in chains of 10: each directory's workstreams are
    # ordered, so only cross-chain overlaps through the shared glob remain.
    items = []
    for i in range(1000):
        d = i % 100
        deps = [f"w{i - 100:04d}"] if i >= 100 else []
        items.append(ws(f"w{i:04d}", [f"pkg{d}/", f"pkg{d}/mod_{i}.py", f"docs/w{i}.md"], *deps))
    items.append(ws("shared", ["pkg7/mod_7.py"]))
    out = warn(*items)
    # Only "shared" is unordered with pkg7's chain (10 workstreams).
    assert len(out) == 10
    assert all("shared" in w and "pkg7/" in w for w in out)


def test_index_matches_brute_force_on_random_patterns():
    rng = random.Random(11)
    comps = ["src", "lib", "a.py", "ab.py", "*.py", "a*", "*b.py", "[ab]*.py", "?b.py", "**",
             "test_*", "t*", "x"]
    pats: list[str] = []
    while len(pats) < 40:
        p = "/".join(rng.choice(comps) for _ in range(rng.randint(1, 3)))
        if rng.random() < 0.15:
            p += "/"
        if validate_pattern(p) is None and p not in pats:
            pats.append(p)
    items = [ws(f"w{i:02d}", [p]) for i, p in enumerate(pats)]
    out = warn(*items)
    expected = sorted(
        (i, j) for i, p in enumerate(pats) for j, q in enumerate(pats)
        if i < j and patterns_overlap(p, q) is not None
    )
    got = sorted(
        (int(w.split(" ")[0][1:]), int(w.split(" ")[2][1:])) for w in out
    )
    assert got == expected
    assert len(expected) > 20
