"""`uet report`: one self-contained HTML page about a run, opened in a real headless browser
(Debian's chromium; skipped with the reason when there is none): it renders, the Gantt chart
has one bar per tool run, no script error, and every workstream's evidence is in the page.
One browser start takes about 3 s on a loaded 2-core machine: that is the only way to know the
page works in a browser, so this test is longer than most."""

from __future__ import annotations

import json
import re
import shutil
import subprocess as sp
from pathlib import Path

import pytest

from tests.conftest import git
from tests.e2e.helpers import last_run, run_ok, sandbox_writable, setup_repo, shared_dir, tool

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SCREENSHOT = Path("/tmp/uet-report-screenshot.png")  # kept for a human to look at


def _browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium binary (apt-get install -y chromium): cannot test the HTML "
                "report in a browser")


def _report_run(tmp_path: Path) -> tuple[Path, str]:
    shared = shared_dir(tmp_path)
    repo = setup_repo(tmp_path / "r", config=sandbox_writable(shared), workstreams={
        "core": {"command": "echo core > core.txt", "acceptance": ["test -f core.txt"]},
        "flaky": {"command": [tool("flaky.sh"), str(shared / "n"), "1"], "retries": 1},
        "broken": {"command": "echo x > broken.txt", "acceptance": ["echo nope; exit 3"]},
        "api": {"depends_on": ["core"], "command": "echo api > api.txt"},
    })
    run_ok(repo, "run", "-j", "2", code=1)
    return repo, last_run(repo)


def test_report_renders_in_a_browser_with_one_bar_per_tool_run(tmp_path: Path):
    browser = _browser()
    repo, run_id = _report_run(tmp_path)
    timings = json.loads(git(repo, "show", f"refs/uet/ledger/{run_id}:run/timings.json"))
    tool_runs = [s for s in timings["steps"] if s["step"] == "tool"]
    assert len(tool_runs) == 5  # flaky failed once and was retried
    out = tmp_path / "report.html"
    proc = run_ok(repo, "report", run_id, "-o", str(out))
    assert f"wrote {out}" in proc.stdout
    page = out.read_text()
    # Self-contained: nothing fetched from anywhere (the SVG namespace is a name, no fetch).
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(\s*["']?http""",
                         page)
    SCREENSHOT.unlink(missing_ok=True)
    shown = sp.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars",
                    "--enable-logging=stderr", "--v=0", "--window-size=1240,1400",
                    f"--screenshot={SCREENSHOT}", "--dump-dom", out.as_uri()],
                   capture_output=True, text=True, timeout=90, stdin=sp.DEVNULL)
    dom, log = shown.stdout, shown.stderr
    assert shown.returncode == 0, log[-2000:]
    assert 'data-ready="1"' in dom, "the page's script did not run"
    assert "data-errors" not in dom, re.findall(r'data-errors="[^"]*"', dom)
    assert "Uncaught" not in log and "ERROR:CONSOLE" not in log, log[-2000:]
    assert SCREENSHOT.stat().st_size > 10_000
    assert len(re.findall(r'class="bar bar-tool[ "]', dom)) == 5
    assert len(re.findall(r'class="bar bar-tool failed"', dom)) == 1
    assert len(re.findall(r'class="bar bar-acceptance[ "]', dom)) >= 2
    assert len(re.findall(r'<details class="ws"', dom)) == 4
    for ws, state in (("core", "committed"), ("api", "committed"), ("flaky", "committed"),
                      ("broken", "quarantined")):
        assert re.search(rf'class="node state-{state}[^"]*" data-ws="{ws}"', dom), ws
    # The critical path (from the measured durations) is named and marked in the graph.
    path = re.search(r'<b id="critical-path">([^<]*)</b>', dom)
    assert path is not None and path.group(1) != "-"
    for ws in path.group(1).split(" → "):
        assert re.search(rf'class="node state-[a-z-]+ critical" data-ws="{ws}"', dom), ws
    # One click away: the failing acceptance's log, the tool's output and the diff.
    broken = dom[dom.index('id="ws-broken"'):]
    assert "acceptance.log" in broken and "exit 3" in broken and "verify-failed" in broken
    core = dom[dom.index('id="ws-core"'):dom.index('id="ws-core"') + 20000]
    assert "+core" in core and "diff --git a/core.txt b/core.txt" in core
    assert "parallel efficiency" in dom and "%" in dom
