"""The kept fold's file (ledger/fold.py): records by column, each column read back exactly
(values and their types), and a file that is corrupt, of another version or another layout
ignored and written again by the next reader."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Forked
from tests.hooks.ledgerkit import scripted_run, uet_commit
from tests.ledger.test_query_scale import shown, whole_fold
from uet_git.gitrepo import Repo
from uet_git.ledger import fold, query
from uet_git.ledger.log import WsRecord

COLUMNS: list[tuple[list[Any], tuple[type, ...], str]] = [
    ([], fold.FIELD_TYPES["ws"], "l"),
    (["a"], fold.FIELD_TYPES["ws"], "c"),
    (["a", "b", "c", "d"], fold.FIELD_TYPES["ws"], "s"),
    (["", "b", "", "d", "e"], fold.FIELD_TYPES["ws"], "s"),
    (["x\ny", "b", "c"], fold.FIELD_TYPES["ws"], "l"),  # a value holding the separator
    (["committed"] * 9 + ["quarantined"], fold.FIELD_TYPES["state"], "x"),
    ([None] * 5, fold.FIELD_TYPES["reason"], "c"),
    ([None, None, "verify-failed", None], fold.FIELD_TYPES["reason"], "x"),
    ([1, 2, 3, 4, 5], fold.FIELD_TYPES["started"], "i"),
    ([-3, 0, 10**20, 7], fold.FIELD_TYPES["started"], "i"),
    ([1, None, 3, None, 4, None], fold.FIELD_TYPES["attempt"], "l"),
    ([1, 1, 1, None], fold.FIELD_TYPES["attempt"], "x"),
    ([False, False, True], fold.FIELD_TYPES["landed"], "x"),
    ([True, False], fold.FIELD_TYPES["landed"], "l"),
]


@pytest.mark.parametrize(("values", "types", "form"), COLUMNS)
def test_a_column_reads_back_as_written(values: list[Any], types: tuple[type, ...],
                                        form: str) -> None:
    col = fold.encode_column(values)
    assert col[0] == form
    back = fold.decode_column(json.loads(json.dumps(col)), len(values), types)
    assert back == values
    assert [type(v) for v in back] == [type(v) for v in values]


@pytest.mark.parametrize(("col", "n", "types"), [
    (["c", "a"], 1, fold.FIELD_TYPES["attempt"]),  # a string where an int belongs
    (["c", 1], 1, fold.FIELD_TYPES["landed"]),  # an int is no bool
    (["c", True], 1, fold.FIELD_TYPES["attempt"]),  # nor a bool an int
    (["s", "a\nb"], 3, fold.FIELD_TYPES["ws"]),  # another length
    (["s", "a\nb"], 2, fold.FIELD_TYPES["attempt"]),
    (["i", "1 2 x"], 3, fold.FIELD_TYPES["started"]),
    (["i", "1  2"], 3, fold.FIELD_TYPES["started"]),
    (["i", "1.5"], 1, fold.FIELD_TYPES["started"]),
    (["x", None, {"5": "r"}], 3, fold.FIELD_TYPES["reason"]),  # a row past the end
    (["x", None, {"01": "r"}], 3, fold.FIELD_TYPES["reason"]),
    (["x", None, {"1": 2}], 3, fold.FIELD_TYPES["reason"]),
    (["l", [1, "a"]], 2, fold.FIELD_TYPES["attempt"]),
    (["l", [1.5]], 1, fold.FIELD_TYPES["started"]),
    (["l", [1]], 2, fold.FIELD_TYPES["attempt"]),
    (["?", []], 0, fold.FIELD_TYPES["ws"]),
    ("s", 0, fold.FIELD_TYPES["ws"]),
    ([], 0, fold.FIELD_TYPES["ws"]),
])
def test_a_column_that_is_not_what_was_written_is_refused(
        col: Any, n: int, types: tuple[type, ...]) -> None:
    with pytest.raises((ValueError, TypeError)):
        fold.decode_column(col, n, types)


def test_every_record_field_has_its_types() -> None:
    assert list(fold.FIELD_TYPES) == [f for f in WsRecord.__dataclass_fields__]


def _kept(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert data["version"] == fold.VERSION and "records" not in data
    return data


def _spoil(d: dict[str, Any], how: str) -> str:
    if how == "truncated":
        return json.dumps(d)[:-40]
    if how == "not json":
        return "\x00\xff garbage"
    if how == "old version":  # the row layout of version 2, which this reader does not read
        return json.dumps({**d, "version": 2, "records": [["a", "committed"]]})
    if how == "short column":
        d["columns"][0] = ["l", ["a"]]
    elif how == "wrong type":
        d["columns"][d["fields"].index("attempt")] = ["c", "one"]
    elif how == "a workstream twice":
        d["columns"][0] = ["c", "a"]
    elif how == "unknown committed workstream":
        d["committed"] = {"n": 1, "ws": ["c", "zz"], "since": ["c", 1], "until": ["c", None]}
    elif how == "committed since not ints":
        d["committed"]["since"] = ["i", " ".join(["1"] * (d["committed"]["n"] - 1) + ["x"])]
    elif how == "committed since of another length":
        d["committed"]["since"] = ["i", " ".join(["1"] * (d["committed"]["n"] + 1))]
    elif how == "committed until not ints":
        d["committed"]["until"] = ["l", ["a"] * d["committed"]["n"]]
    elif how == "bad planned":
        d["planned"] = ["l", [1, 2]]
    elif how == "other fields":
        d["fields"] = d["fields"][::-1]
    return json.dumps(d)


@pytest.mark.parametrize("how", [
    "truncated", "not json", "old version", "short column", "wrong type",
    "a workstream twice", "unknown committed workstream", "committed since not ints",
    "committed since of another length", "committed until not ints", "bad planned",
    "other fields"])
def test_a_spoilt_kept_fold_is_ignored_and_written_again(repo: Path, how: str) -> None:
    s, _ = scripted_run(repo)
    query.run_status(s.repo, s.run)
    path = fold.cache_path(s.repo, s.run)
    good = _kept(path)
    assert good["committed"]["n"] >= 2
    path.write_text(_spoil(json.loads(json.dumps(good)), how))
    assert fold.load(s.repo, s.run) is None
    assert shown(query.run_status(s.repo, s.run)) == whole_fold(s.repo, s.run)
    assert _kept(path) == good  # the next reader wrote it again, the same


def test_a_kept_fold_reads_back_the_fold_it_was(repo: Path) -> None:
    s, _ = scripted_run(repo)
    made = fold.fold(s.repo, s.run)
    fold.cache_path(s.repo, s.run).unlink()
    fold.save(s.repo, made)
    kept = fold.load(s.repo, s.run)
    assert kept is not None and kept == made


def test_readers_beside_a_writer_keep_a_fold_of_some_tip(repo: Path) -> None:
    """Readers fold and keep the file while the writer appends: every file a reader finds
    is the fold of the tip it names (never a mix), and the last reader shows the whole
    ledger."""
    s, led = scripted_run(repo, keep_open=True)
    assert led is not None
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                query.run_status(Repo.open(repo), s.run)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    seen: set[str] = set()
    try:
        for attempt in range(2, 5):
            patch = uet_commit(s.repo, s.base, {"d.txt": f"d{attempt}\n"}, "d", s.run)
            led.record("d", "created", attempt=attempt, patch=patch)
            led.record("d", "quarantined", attempt=attempt, reason="tool-failed")
            kept = fold.load(s.repo, s.run)
            if kept is not None:
                seen.add(kept.tip)
                assert kept == _refolded(s.repo, kept)
    finally:
        done.set()
        for t in readers:
            t.join()
        led.close()
    assert not errors and seen
    assert shown(query.run_status(s.repo, s.run)) == whole_fold(s.repo, s.run)
    kept = fold.load(s.repo, s.run)
    assert kept is not None and kept.tip == s.repo.read_ref(f"refs/uet/ledger/{s.run}")


def _refolded(repo: Repo, kept: fold.Folded) -> fold.Folded:
    """The fold at ``kept``'s tip from the ledger's first commit (no kept file read), with the
    plan ``kept`` read (a reader adds it after folding)."""
    f = fold.fold_all(repo, kept.run, kept.tip)
    f.plan_oid, f.planned = kept.plan_oid, kept.planned
    return f


def test_a_writer_killed_while_keeping_the_fold_leaves_a_whole_file(repo: Path) -> None:
    """``kill -9`` of a process in the middle of keeping a fold: the file is the old fold or
    the new one, whole (written aside, then renamed), and readers go on from it."""
    s, _ = scripted_run(repo)
    query.run_status(s.repo, s.run)
    path = fold.cache_path(s.repo, s.run)
    before = path.read_bytes()

    def keep_saving() -> int:
        r = Repo.open(repo)
        f = fold.fold(r, s.run)
        f.records = {f"w{i:05d}": WsRecord(ws=f"w{i:05d}", state="created")
                     for i in range(20000)}
        f.committed = {}
        print("ready", flush=True)
        while True:
            fold.save(r, f)

    for delay in (0.0, 0.05, 0.2):
        proc = Forked(keep_saving)
        assert proc.stdout.readline() == "ready\n"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.close()
        kept = fold.load(s.repo, s.run)
        assert path.read_bytes() == before or (kept is not None and len(kept.records) == 20000)
        path.write_bytes(before)
    assert shown(query.run_status(s.repo, s.run)) == whole_fold(s.repo, s.run)
