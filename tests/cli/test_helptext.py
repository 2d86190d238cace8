"""`uet --help` is laid out without click (cli/helptext.py): the page must be the one click
prints for the group, at any terminal width, and anything else still goes to click."""

from __future__ import annotations

import subprocess
import sys

import pytest

import uet_git.cli.group as group
from uet_git.cli import main


def _page(fn: object, args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    try:
        rv = fn(args)  # type: ignore[operator]
    except SystemExit as exc:
        rv = exc.code
    assert rv in (0, None)
    return capsys.readouterr().out


@pytest.mark.parametrize("columns", ["", "20", "52", "60", "79", "80", "81", "120", "300"])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_the_page_is_clicks_at_every_width(columns: str, flag: str,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    if columns:
        monkeypatch.setenv("COLUMNS", columns)
    else:
        monkeypatch.delenv("COLUMNS", raising=False)
    fast = _page(main, [flag], capsys)
    assert fast == _page(group.main, [flag], capsys)
    assert fast.startswith("Usage: uet [OPTIONS] COMMAND [ARGS]...\n")
    assert "\nCommands:\n" in fast and "  run " in fast


def test_help_imports_no_click() -> None:
    code = ("import sys\nfrom uet_git.cli import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\n"
            "sys.stderr.write(repr(sorted(m for m in sys.modules if m.split('.')[0] == 'click')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert proc.stderr == "[]"
    assert proc.stdout.startswith("Usage: uet [OPTIONS] COMMAND [ARGS]...")


@pytest.mark.parametrize("args", [["--help", "run"], ["run", "--help"], ["--version"]])
def test_anything_else_goes_to_click(args: list[str], capsys: pytest.CaptureFixture[str]
                                     ) -> None:
    assert _page(main, args, capsys) == _page(group.main, args, capsys)


def test_shell_completion_is_still_clicks(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    # with click's completion variable set, `uet --help` is a completion request
    monkeypatch.setenv("_UET_COMPLETE", "bash_source")
    assert "_uet_completion" in _page(main, ["--help"], capsys)
