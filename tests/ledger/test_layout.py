"""Ref names, run ids and parsing refs back."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from itertools import combinations

import pytest

from uet_git.errors import UetError
from uet_git.ledger import layout
from uet_git.ledger.states import STATES

RUN = "20261125-101502-3f2a"


def test_new_run_id_is_utc_sortable_and_random() -> None:
    ids = {layout.new_run_id(datetime(2026, 11, 25, 10, 15, 2, tzinfo=UTC)) for _ in range(50)}
    assert all(i.startswith("20261125-101502-") for i in ids)
    assert len(ids) > 10  # 4 random hex digits
    for i in ids:
        assert layout.check_run_id(i) == i
    now = layout.new_run_id()
    assert layout.RUN_RE.match(now)
    # Within one second, later starts sort later (the latest run is the last one started).
    same_second = [layout.new_run_id(datetime(2026, 11, 25, 10, 15, 2, ms * 1000, tzinfo=UTC))
                   for ms in (0, 1, 7, 250, 998, 999)]
    assert same_second == sorted(same_second) and len(set(same_second)) == 6
    assert abs((layout.run_time(now) - datetime.now(UTC)).total_seconds()) < 5


@pytest.mark.parametrize("bad", ["", "latest", "20261125-101502", "20261125-101502-3F2A",
                                 "20261325-101502-3f2a", "20261125-101502-3f2a/x",
                                 "../20261125-101502-3f2a", "x" * 500])
def test_bad_run_ids_are_one_line_errors(bad: str) -> None:
    with pytest.raises(UetError, match="bad run id") as info:
        layout.check_run_id(bad)
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


def test_ref_names_round_trip_and_are_valid_for_git() -> None:
    names = [layout.ledger_ref(RUN), layout.integration_ref(RUN),
             layout.patch_ref(RUN, "ws-a.b_c", 3),
             *(layout.state_ref(s, RUN, "ws-a.b_c") for s in STATES)]
    for n in names:
        ok = subprocess.run(["git", "check-ref-format", n]).returncode == 0
        assert ok, n
        p = layout.parse_ref(n)
        assert p is not None and p.run == RUN
    assert layout.parse_ref(layout.patch_ref(RUN, "w", 3)) == layout.ParsedRef(
        "patch", RUN, ws="w", attempt=3)
    assert layout.parse_ref(layout.state_ref("rolled-back", RUN, "w")) == layout.ParsedRef(
        "state", RUN, ws="w", state="rolled-back")
    assert layout.parse_ref(layout.ledger_ref(RUN)) == layout.ParsedRef("ledger", RUN)
    for bad in ("refs/heads/main", "refs/uet/ledger/x", f"refs/uet/ledger/{RUN}/x",
                f"refs/uet/bogus/{RUN}/w", f"refs/uet/patches/{RUN}/w", f"refs/uet/queued/{RUN}"):
        assert layout.parse_ref(bad) is None, bad
    # Fixed depth: no ref of the layout is a prefix (directory) of another.
    more = [*names, layout.patch_ref(RUN, "ws-a.b_c", 1), layout.state_ref("queued", RUN, "b")]
    for a, b in combinations(more, 2):
        assert not a.startswith(b + "/") and not b.startswith(a + "/")
    with pytest.raises(UetError):
        layout.patch_ref(RUN, "w", 0)
    with pytest.raises(UetError):
        layout.state_ref("merged", RUN, "w")


@pytest.mark.parametrize("bad", ["", "A", "-x", "a b", "a..b", "a.", "a.lock", "a/b", "a~1",
                                 "x" * 101])
def test_bad_workstream_ids(bad: str) -> None:
    with pytest.raises(UetError, match="bad workstream id"):
        layout.check_ws_id(bad)


def test_prefixes_cover_one_run_only() -> None:
    prefixes = layout.state_prefixes(RUN)
    assert len(prefixes) == len(STATES)
    assert all(p.endswith(f"/{RUN}/") for p in prefixes)
    assert layout.patch_prefix(RUN) == f"refs/uet/patches/{RUN}/"
