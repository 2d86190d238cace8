"""The one trailer parser/formatter, checked against git interpret-trailers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo.trailers import format_message, parse_trailers, split_message


def test_round_trip_and_git_reads_the_same(tmp_path: Path) -> None:
    msg = format_message("w1: queued -> committed", "why it moved\n--- not a patch\n\nmore",
                         [("Uet-Workstream", "w1"), ("Uet-To", "committed"),
                          ("Uet-Detail", "two\nlines")])
    assert msg.endswith("\n")
    assert parse_trailers(msg) == {"Uet-Workstream": "w1", "Uet-To": "committed",
                                   "Uet-Detail": "two lines"}
    subject, body, _ = split_message(msg)
    assert subject == "w1: queued -> committed"
    assert body == "why it moved\n --- not a patch\n\nmore"
    path = make_repo(tmp_path / "repo")
    parsed = git(path, "interpret-trailers", "--parse", input=msg).splitlines()
    assert parsed == ["Uet-Workstream: w1", "Uet-To: committed", "Uet-Detail: two lines"]


def test_last_value_wins_and_continuations() -> None:
    msg = "s\n\nbody\n\nA: 1\nB: 2\nA: 3\n  continued\n"
    assert parse_trailers(msg) == {"A": "3 continued", "B": "2"}


def test_not_a_trailer_block() -> None:
    assert parse_trailers("subject only") == {}
    assert parse_trailers("Key: value") == {}  # the subject is never a trailer
    assert parse_trailers("s\n\nKey: v\nplain text line\n") == {}
    assert parse_trailers("s\n\nKey: v\n\nlast paragraph\n") == {}


def test_no_trailers_formats_subject_and_body() -> None:
    assert format_message("s", "", []) == "s\n"
    assert format_message("s", "b", []) == "s\n\nb\n"


@pytest.mark.parametrize("trailers", [
    [("A", "1")],
    [("Uet-A", "x: y"), ("B", "  spaced\tout  "), ("Uet-A", "z")],
    [("K", ""), ("L", "tail")],
])
@pytest.mark.parametrize("body", ["", "plain", "Key: looks like one\n\nthen text"])
def test_parse_reads_what_format_writes(trailers: list[tuple[str, str]], body: str) -> None:
    msg = format_message("subject", body, trailers)
    want: dict[str, str] = {}
    for k, v in trailers:
        want.pop(k, None)
        want[k] = " ".join(v.split())
    assert parse_trailers(msg) == want
