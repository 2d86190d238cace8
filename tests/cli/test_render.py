"""The reporter's three outputs: lines, JSON lines, and the live view's redraw."""

from __future__ import annotations

import io
import json

from uet_git.cli.render import Reporter, show_dry_run
from uet_git.engine.dryrun import DryRunView


def test_lines_mode_one_line_per_transition_then_table():
    out = io.StringIO()
    r = Reporter("lines", out)
    r.start("20261125-101502-3f2a", ["a", "b"], jobs=2, target="main", base="f" * 40)
    r.transition("a", None, "created", detail="shell produced 1 changed paths")
    r.transition("b", "queued", "quarantined", reason="conflict", detail="x.txt\nmore")
    r.finish({"run": "20261125-101502-3f2a", "counts": {"created": 1, "quarantined": 1},
              "message": "nothing landed"}, [["a", "created", "1", "", "0s"],
                                             ["b", "quarantined", "1", "conflict", "1s"]])
    text = out.getvalue()
    assert "a: none -> created  shell produced 1 changed paths" in text
    assert "b: queued -> quarantined [conflict]  x.txt" in text
    assert "git log --oneline refs/uet/ledger/20261125-101502-3f2a" in text
    assert "git for-each-ref refs/uet/quarantined/20261125-101502-3f2a/" in text
    assert "\x1b[" not in text


def test_json_mode_every_line_parses():
    out = io.StringIO()
    r = Reporter("json", out)
    r.start("20261125-101502-3f2a", ["a"], jobs=1, target=None, base="0" * 40)
    r.worker(0, "a", "tool")
    r.transition("a", None, "quarantined", reason="empty")
    r.message("hello")
    r.finish({"run": "20261125-101502-3f2a", "exit_code": 1, "counts": {"quarantined": 1}}, [])
    objs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [o["event"] for o in objs] == ["start", "transition", "message", "summary"]
    assert objs[1]["reason"] == "empty" and objs[1]["from"] is None
    assert objs[-1]["exit_code"] == 1


def test_live_mode_redraws_the_worker_table():
    out = io.StringIO()
    r = Reporter("live", out)
    r.start("20261125-101502-3f2a", ["a", "b"], jobs=2, target="main", base="f" * 40)
    r.worker(0, "a", "tool")
    r.worker(-1, "b", "hooks")
    text = out.getvalue()
    assert "worker 0" in text and "integrator" in text and "\x1b[" in text
    assert "pending 1, running 1" in text
    r.worker(0, None)
    r.finish({"run": "20261125-101502-3f2a", "counts": {}}, [])
    assert out.getvalue().rstrip().endswith("uet show WS")


def test_auto_mode_is_lines_off_a_terminal():
    assert Reporter("auto", io.StringIO()).mode == "lines"


def test_a_closed_output_does_not_stop_the_run():
    out = io.StringIO()
    r = Reporter("lines", out)
    out.close()
    r.start("20261125-101502-3f2a", ["a"], jobs=1, target=None, base="0" * 40)
    r.transition("a", None, "created")
    r.finish({"run": "20261125-101502-3f2a", "counts": {}}, [])


def test_dry_run_view_as_text_or_one_json_line():
    view = DryRunView(["a", "b"], ["dry run: 2 workstreams", "wave 1: a b"],
                      {"event": "dry-run", "order": ["a", "b"]})
    out = io.StringIO()
    show_dry_run(Reporter("lines", out), view)
    assert out.getvalue() == "dry run: 2 workstreams\nwave 1: a b\n"
    out = io.StringIO()
    show_dry_run(Reporter("json", out), view)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [view.record]
