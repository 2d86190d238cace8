"""``render.text_table`` lays out the same text as the plain ljust-and-join it replaced, for
cells of any width (empty, unicode, braces, spaces at the ends) and for no rows."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from uet_git.cli.render import text_table


def ljust_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    """The layout as it was first written: every cell ``ljust`` to its column's width."""
    cols = [list(headers), *[list(map(str, r)) for r in rows]]
    widths = [max(len(r[i]) for r in cols) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cols)


CASES: list[tuple[list[list[str]], list[str]]] = [
    ([], ["A", "B"]),
    ([["x", "y"]], ["A", "B"]),
    ([["", ""], ["", ""]], ["", ""]),
    ([["é", "ß€"], ["longer cell", ""]], ["WS", "STATE"]),
    ([["{0}", "{x} }{"], ["%s", "a  "]], ["F", "G"]),
    ([[" lead", "trail "], ["mid dle", "  "]], ["ONE", "TWO"]),
    ([[str(i), "s" * (i % 7), "-" if i % 3 else "reason"] for i in range(50)],
     ["N", "S", "R"]),
]


@pytest.mark.parametrize(("rows", "headers"), CASES)
def test_the_table_is_the_ljust_layout(rows: list[list[str]], headers: list[str]) -> None:
    assert text_table(rows, headers) == ljust_table(rows, headers)


def test_cells_that_are_not_strings_are_shown_as_str() -> None:
    rows: list[list[object]] = [[1, None], [2.5, True]]
    assert text_table(rows, ["A", "B"]) == ljust_table(rows, ["A", "B"])  # type: ignore[arg-type]


def test_a_row_of_another_length_is_an_error() -> None:
    with pytest.raises(ValueError):
        text_table([["a"]], ["A", "B"])
    with pytest.raises(ValueError):
        text_table([["a", "b", "c"]], ["A", "B"])
