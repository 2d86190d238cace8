"""Tool adapters, run for real against fake executables on PATH that record argv and stdin."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.conftest import make_repo
from uet_git.gitrepo.repo import Repo
from uet_git.spec.models import Config, ToolDef, Workstream
from uet_git.workers.process import run_process
from uet_git.workers.tools import (
    build_invocation,
    check_claude_output,
    check_codex_output,
    check_tool,
    expand_template,
    prepare_repo_for_tools,
    resolve_tool,
    scope_files,
    tool_env,
    worker_port,
)

FAKE = """#!/bin/sh
# Records how it was called, then prints what FAKE_OUTPUT_<name> says.
name=$(basename "$0")
printf '%s\\0' "$@" > "$FAKE_RECORD/$name.argv"
cat > "$FAKE_RECORD/$name.stdin"
pwd > "$FAKE_RECORD/$name.cwd"
env > "$FAKE_RECORD/$name.env"
if [ -n "$FAKE_OUTPUT" ]; then printf '%s\\n' "$FAKE_OUTPUT"; fi
exit "${FAKE_EXIT:-0}"
"""


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("aider", "claude", "codex", "mytool"):
        p = bin_dir / name
        p.write_text(FAKE)
        p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    record = tmp_path / "record"
    record.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_RECORD", str(record))
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("CODEX_API_KEY", raising=False)
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    monkeypatch.delenv("CODEX_HOME", raising=False)
    return record


def _ws(**kw) -> Workstream:
    kw.setdefault("id", "ws-a")
    return Workstream(**kw)


def _run(tmp_path: Path, ws: Workstream, config: Config | None = None,
         env: dict[str, str] | None = None):
    wt = tmp_path / "wt"
    wt.mkdir(exist_ok=True)
    logs = tmp_path / "logs"
    prompt = tmp_path / "prompt.md"
    inv = build_invocation(ws, config or Config(), worktree=wt, prompt_file=prompt, log_dir=logs)
    res = run_process(inv.cmd, cwd=wt, env={**inv.env, **(env or {})}, timeout=30,
                      stdout_path=logs / "out", stderr_path=logs / "err",
                      stdin_path=inv.stdin_path)
    return inv, res, wt, logs, prompt


def _argv(record: Path, name: str) -> list[str]:
    return (record / f"{name}.argv").read_text().split("\0")[:-1]


def test_aider_preset(tmp_path: Path, fake_bin: Path) -> None:
    ws = _ws(tool="aider", prompt="Add a login endpoint\n",
             scope={"allow": ["src/auth.py", "src/**", "tests/test_auth.py", "docs/"]},
             metadata={"model": "sonnet", "read": ["CONVENTIONS.md"]})
    inv, res, wt, logs, prompt = _run(tmp_path, ws)
    assert res.returncode == 0 and inv.output == "worktree" and inv.stdin_path is None
    assert _argv(fake_bin, "aider") == [
        "--message-file", str(prompt), "--yes-always", "--no-auto-commits", "--no-dirty-commits",
        "--no-gitignore", "--no-check-update", "--no-analytics", "--no-show-model-warnings",
        "--no-pretty", "--no-stream", "--no-fancy-input", "--no-detect-urls",
        "--no-suggest-shell-commands", "--chat-history-file", str(logs / "aider.chat.md"),
        "--input-history-file", str(logs / "aider.input"), "--model", "sonnet",
        "--read", "CONVENTIONS.md", "--", "src/auth.py", "tests/test_auth.py",
    ]
    assert prompt.read_text() == "Add a login endpoint\n"
    assert (fake_bin / "aider.stdin").read_bytes() == b""  # /dev/null
    assert (fake_bin / "aider.cwd").read_text().strip() == str(wt)


def test_claude_preset(tmp_path: Path, fake_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = _ws(tool="claude", prompt="Fix the bug", acceptance=["pytest -q tests"])
    ok = json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": "done"})
    inv, res, _wt, logs, prompt = _run(tmp_path, ws, env={"FAKE_OUTPUT": ok})
    assert _argv(fake_bin, "claude") == [
        "-p", "--output-format", "json", "--permission-mode", "acceptEdits",
        "--allowedTools", "Read", "Edit", "Write", "Bash(pytest -q tests *)",
        "--disallowedTools", "Bash(git commit *)", "Bash(git push *)",
        "--max-turns", "50", "--no-session-persistence",
    ]
    assert (fake_bin / "claude.stdin").read_text() == "Fix the bug"
    assert inv.stdin_path == prompt and "CLAUDE_CONFIG_DIR" not in inv.env
    assert inv.result_check is not None
    assert inv.result_check((logs / "out").read_bytes()) is None
    bad = json.dumps({"type": "result", "subtype": "success", "is_error": True,
                      "result": "Credit balance is too low"})
    inv, res, *_ = _run(tmp_path, ws, env={"FAKE_OUTPUT": bad})
    assert res.returncode == 0
    assert inv.result_check((tmp_path / "logs" / "out").read_bytes()) == (
        "claude reported an error: Credit balance is too low")
    # With an API key, each run gets its own config dir (no shared OAuth state to race on).
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    ws2 = _ws(tool="claude", prompt="p", metadata={"model": "opus", "max_turns": 7})
    inv, *_ = _run(tmp_path, ws2, env={"FAKE_OUTPUT": ok})
    assert inv.env["CLAUDE_CONFIG_DIR"] == str(tmp_path / "logs" / "claude-config")
    assert Path(inv.env["CLAUDE_CONFIG_DIR"]).is_dir()
    argv = _argv(fake_bin, "claude")
    assert argv[argv.index("--max-turns") + 1] == "7" and argv[-2:] == ["--model", "opus"]
    assert f"CLAUDE_CONFIG_DIR={tmp_path / 'logs' / 'claude-config'}" in (
        fake_bin / "claude.env").read_text().splitlines()


def test_codex_preset(tmp_path: Path, fake_bin: Path) -> None:
    ws = _ws(tool="codex", prompt="Refactor", metadata={"model": "gpt-5"})
    events = "\n".join(json.dumps(e) for e in [{"type": "thread.started"},
                                                {"type": "turn.completed"}])
    inv, _res, wt, logs, _prompt = _run(tmp_path, ws, env={"FAKE_OUTPUT": events})
    assert _argv(fake_bin, "codex") == [
        "exec", "--cd", str(wt), "--sandbox", "workspace-write", "--ephemeral", "--color",
        "never", "--json", "--output-last-message", str(logs / "codex-last.md"),
        "--model", "gpt-5", "-",
    ]
    assert (fake_bin / "codex.stdin").read_text() == "Refactor"
    assert inv.result_check is not None
    assert inv.result_check((logs / "out").read_bytes()) is None
    failed = json.dumps({"type": "turn.failed", "error": {"message": "rate limited"}})
    assert inv.result_check(events.encode() + b"\n" + failed.encode()) == (
        "codex turn.failed: rate limited")
    assert check_codex_output(b'{"type":"error","message":"stream broke"}\n') == (
        "codex error: stream broke")
    assert check_codex_output(b"Usage: codex exec [OPTIONS]\n") is not None


def test_result_checks_on_unusual_output() -> None:
    assert check_claude_output(b"") is not None
    assert check_claude_output(b"error: unknown option '--no-session-persistence'\n") is not None
    assert check_claude_output(b'{"subtype":"error_max_turns","is_error":false}') == (
        "claude stopped: error_max_turns")
    assert check_claude_output(b'[{"type":"system"},{"type":"result","is_error":false}]') is None


def test_shell_tool_string_list_env_and_closed_stdin(tmp_path: Path) -> None:
    ws = _ws(command="echo \"$UET_WORKSTREAM:$UET_PORT:$MY\"; cat; echo end", env={"MY": "x"})
    wt = tmp_path / "wt"
    env = tool_env(ws, run="r1", attempt=2, worktree=wt, worker=3, port=20300,
                   prompt_file=tmp_path / "p.md")
    assert env["UET_RUN"] == "r1" and env["UET_ATTEMPT"] == "2" and env["UET_WORKER"] == "3"
    assert env["UET_PROMPT_FILE"] == str(tmp_path / "p.md") and env["UET_PROMPT"] == ""
    inv, res, *_ = _run(tmp_path, ws, env=env)
    assert res.returncode == 0
    assert inv.cmd == ws.command and inv.stdin_path is None and inv.result_check is None
    assert (tmp_path / "logs" / "out").read_text() == "ws-a:20300:x\nend\n"
    ws = _ws(command=["printf", "%s|", "a b", "$HOME"])
    inv, _res, *_ = _run(tmp_path, ws)
    assert (tmp_path / "logs" / "out").read_text() == "a b|$HOME|"
    assert worker_port(Config(), 2) == 20200


def test_tool_env_cuts_a_huge_prompt() -> None:
    ws = _ws(prompt="é" * 100_000)
    env = tool_env(ws, run="r", attempt=1, worktree=Path("/w"), worker=0, port=1)
    assert len(env["UET_PROMPT"].encode()) <= 64 * 1024


def test_config_tools(tmp_path: Path, fake_bin: Path) -> None:
    config = Config(tools={
        "fmt": ToolDef(command="mytool --in {prompt_file} --dir {workdir} {files} ${HOME:+x}",
                       output="diff", env={"T": "1"}),
        "lst": ToolDef(command=["mytool", "--model={model}", "{files}", "--log", "{log_dir}"],
                       output="mbox", stdin="prompt", model="m1"),
    })
    ws = _ws(tool="fmt", prompt="it's", scope={"allow": ["a b.py", "c.py", "x/*.py"]})
    inv, _res, wt, _logs, prompt = _run(tmp_path, ws, config)
    assert inv.output == "diff" and inv.env == {"T": "1"} and inv.stdin_path is None
    assert isinstance(inv.cmd, str)
    assert _argv(fake_bin, "mytool") == ["--in", str(prompt), "--dir", str(wt), "a b.py", "c.py",
                                         "x"]
    ws = _ws(tool="lst", prompt="p", scope={"allow": ["a.py", "b.py"]})
    inv, *_ = _run(tmp_path, ws, config)
    assert inv.output == "mbox" and inv.stdin_path == tmp_path / "prompt.md"
    assert _argv(fake_bin, "mytool") == ["--model=m1", "a.py", "b.py", "--log",
                                         str(tmp_path / "logs")]
    assert expand_template(["{files}"], {}, []) == []
    assert expand_template("{unknown} {model}", {"model": "a b"}, []) == "{unknown} 'a b'"
    # A uet.toml tool named like a preset replaces the preset.
    override = Config(tools={"claude": ToolDef(command="mytool --custom")})
    assert resolve_tool(_ws(tool="claude", prompt="p"), override).kind == "config"


def test_check_tool(tmp_path: Path, fake_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = Config(tools={"mine": ToolDef(command="nosuchtool-xyz {prompt_file}"),
                        "ok": ToolDef(command=["{workdir}/run.sh"])})
    assert check_tool(_ws(command="echo hi"), cfg) is None
    assert check_tool(_ws(tool="nope"), cfg) == (
        "unknown tool 'nope' (known: shell, aider, claude, codex, gemini, opencode, mine, ok)")
    assert check_tool(_ws(), cfg) == "tool shell needs a command"
    assert check_tool(_ws(command="  "), cfg) == "tool shell needs a command"
    assert check_tool(_ws(command=[]), cfg) == "tool shell needs a command"
    assert check_tool(_ws(tool="claude"), cfg) == "tool claude needs a prompt"
    assert check_tool(_ws(tool="claude", prompt="go"), cfg) is None
    assert check_tool(_ws(command="nosuchtool-xyz --flag"), cfg) == (
        "executable 'nosuchtool-xyz' not found on PATH")
    assert check_tool(_ws(command="FOO=1 nosuchtool-xyz"), cfg) == (
        "executable 'nosuchtool-xyz' not found on PATH")
    assert check_tool(_ws(command=["nosuchtool-xyz"]), cfg) == (
        "executable 'nosuchtool-xyz' not found on PATH")
    assert check_tool(_ws(command=["/nonexistent/tool"]), cfg) is not None
    # Conservative: shell syntax, builtins and relative paths are not judged.
    for cmd in ("cd sub && nosuchtool-xyz", "./scripts/run.sh", "$TOOL --x",
                "if true; then nosuchtool-xyz; fi", "python3 -c 'print(1)'", "'unclosed"):
        assert check_tool(_ws(command=cmd), cfg) is None, cmd
    assert check_tool(_ws(tool="mine", prompt="p"), cfg) == (
        "executable 'nosuchtool-xyz' not found on PATH")
    assert check_tool(_ws(tool="mine"), cfg) == "tool mine needs a prompt"
    assert check_tool(_ws(tool="ok"), cfg) is None
    monkeypatch.setenv("PATH", "/nonexistent")
    assert check_tool(_ws(tool="aider", prompt="p"), cfg) == (
        "executable 'aider' not found on PATH")
    # ws.env can supply the PATH the tool will run with.
    assert check_tool(_ws(tool="aider", prompt="p", env={"PATH": str(tmp_path / "bin")}),
                      cfg) is None


def test_missing_preset_executable_at_run_time(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    _inv, res, *_ = _run(tmp_path, _ws(tool="codex", prompt="p"))
    assert res.returncode is None and res.error == "executable not found: codex"


def test_scope_files() -> None:
    ws = _ws(scope={"allow": ["a.py", "src/**", "b/[ab].py", "docs/", "c/d.txt", "e?.py"]})
    assert scope_files(ws) == ["a.py", "c/d.txt"]


def test_prepare_repo_for_tools_is_idempotent(tmp_path: Path) -> None:
    repo = Repo.open(make_repo(tmp_path / "repo"))
    exclude = repo.common_dir / "info" / "exclude"
    before = exclude.read_text() if exclude.exists() else ""
    assert prepare_repo_for_tools(repo) is True
    assert prepare_repo_for_tools(repo) is False
    after = exclude.read_text()
    assert after.startswith(before) and after.count(".aider*") == 1
    (repo.workdir / ".aider.chat.history.md").write_text("x")
    from tests.conftest import git
    assert git(repo.workdir, "status", "--porcelain") == ""
