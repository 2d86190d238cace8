"""Agent presets through `uet run`, against recording fakes on PATH (tests/e2e/tools/fake-agent
installed as claude, aider, codex, gemini, opencode): the command lines they get, the failures
they report with exit 0, the transcripts kept as evidence, the notices in the run header, the
dry run's command lines, UET_ATTEMPT across retries, [worktree] setup and `uet validate`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tests.conftest import git
from tests.e2e.helpers import (
    TOOLS,
    last_run,
    run,
    run_ok,
    sandbox_writable,
    setup_repo,
    shared_dir,
    states,
)

AGENTS = ("claude", "aider", "codex", "gemini", "opencode")
CLAUDE_OK = json.dumps({"type": "result", "subtype": "success", "is_error": False,
                        "result": "done", "total_cost_usd": 0.0123, "num_turns": 3,
                        "session_id": "sess-42"})


def _fakes(tmp_path: Path) -> tuple[Path, dict[str, str], str]:
    """The shared dir (records land in it), the env putting the fakes first on PATH, and the
    uet.toml lines letting the sandboxed fakes write there."""
    shared = shared_dir(tmp_path)
    fakebin = shared / "bin"
    fakebin.mkdir(exist_ok=True)
    for name in (*AGENTS, "mine"):
        shutil.copy(TOOLS / "fake-agent", fakebin / name)
    record = shared / "record"
    record.mkdir(exist_ok=True)
    env = {"PATH": f"{fakebin}{os.pathsep}{os.environ['PATH']}", "FAKE_RECORD": str(record)}
    for var in ("ANTHROPIC_API_KEY", "CODEX_API_KEY", "CLAUDE_CONFIG_DIR", "CODEX_HOME"):
        env[var] = ""
    return record, env, sandbox_writable(shared)


def _argv(record: Path, name: str, ws: str) -> list[str]:
    return (record / f"{name}.{ws}.argv").read_text().split("\0")[:-1]


def _evidence(repo: Path, ws: str, name: str, attempt: int = 1) -> str:
    return git(repo, "show", f"refs/uet/ledger/{last_run(repo)}:evidence/{ws}/{attempt}/{name}")


def test_presets_command_lines_evidence_and_refusals(tmp_path: Path):
    record, env, sandbox = _fakes(tmp_path)
    config = sandbox + """
[presets.claude]
model = "opus-x"
max_budget_usd = 2.5
extra_allowed_tools = ["WebFetch"]

[presets.gemini]
model = "gemini-pro-x"

[tools.mine]
command = "mine {prompt_file}"
success = {regex = "(?i)permission denied", stream = "stderr", match = false}

[tools.mine-json]
command = "mine {prompt_file}"
success = {json = "stdout", field = "status", equals = "ok"}
"""
    files = {"README.md": "x\n", "src/a.py": "a\n", "src/b.py": "b\n", "src/gen/c.py": "c\n",
             "src/notes.txt": "n\n"}
    ws = {
        "cl": {"tool": "claude", "prompt": "Fix it", "env": {"FAKE_STDOUT": CLAUDE_OK},
               "acceptance": ["test -s claude.txt && grep -q edited claude.txt | cat; true"]},
        "ai": {"tool": "aider", "prompt": "Edit", "scope": {
            "allow": ["README.md", "src/**/*.py", "aider.txt"], "deny": ["src/gen/**"]}},
        "ai-bad": {"tool": "aider", "prompt": "Edit", "env": {
            "FAKE_STDOUT": "litellm.AuthenticationError: AnthropicException - invalid x-api-key"}},
        "cx": {"tool": "codex", "prompt": "Edit", "env": {
            "FAKE_STDOUT": '{"type":"turn.completed"}'}},
        "gm": {"tool": "gemini", "prompt": "Edit", "env": {
            "FAKE_STDOUT": '{"response": "done", "stats": {}}'}},
        "oc": {"tool": "opencode", "prompt": "Edit", "metadata": {"model": "anthropic/x"},
               "env": {"FAKE_STDOUT": '{"type":"text","part":{}}'}},
        "oc-bad": {"tool": "opencode", "prompt": "Edit", "env": {
            "FAKE_STDOUT": '{"type":"error","error":{"message":"permission rejected"}}'}},
        "mine-bad": {"tool": "mine", "prompt": "Edit", "env": {
            "FAKE_STDERR": "Permission denied by policy"}},
        "mine-json": {"tool": "mine-json", "prompt": "Edit", "env": {
            "FAKE_STDOUT": '{"status": "refused"}'}},
    }
    repo = setup_repo(tmp_path / "r", files=files, config=config, workstreams=ws)
    proc = run(repo, "run", "--jobs", "2", "--land", "never", env=env)
    got = states(repo)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert {k: v for k, v in got.items() if v == "quarantined"}.keys() == {
        "ai-bad", "oc-bad", "mine-bad", "mine-json"}, got
    assert all(got[w] == "committed" for w in ("cl", "ai", "cx", "gm", "oc")), got

    # claude: one Bash rule per part of the compound acceptance command; the preset settings
    argv = _argv(record, "claude", "cl")
    assert argv[argv.index("--allowedTools"):argv.index("--disallowedTools")] == [
        "--allowedTools", "Read", "Edit", "Write", "Bash(test -s claude.txt *)",
        "Bash(grep -q edited claude.txt *)", "Bash(cat *)", "Bash(true *)", "WebFetch"]
    assert argv[-4:] == ["--max-budget-usd", "2.5", "--model", "opus-x"]
    assert (record / "claude.cl.stdin").read_text() == "Fix it"
    assert json.loads(_evidence(repo, "cl", "result.json"))["session_id"] == "sess-42"
    shown = run_ok(repo, "show", "cl", env=env).stdout
    assert "agent: cost $0.0123, 3 turns, session sess-42" in shown

    # aider: the tracked files its globs match at the base (deny removed); chat history kept
    argv = _argv(record, "aider", "ai")
    assert argv[argv.index("--") + 1:] == ["README.md", "aider.txt", "src/a.py", "src/b.py"]
    assert _evidence(repo, "ai", "aider.chat.md") == "# aider chat: asked to edit"
    log = git(repo, "log", "--format=%B", f"refs/uet/ledger/{last_run(repo)}")
    assert "Uet-Reason: tool-failed" in log and "litellm.AuthenticationError" in log

    # codex: last message and JSON events kept
    assert _evidence(repo, "cx", "codex-last.md") == "codex: done"
    assert _evidence(repo, "cx", "codex.jsonl") == '{"type":"turn.completed"}'

    # gemini and opencode command lines, prompt on stdin
    assert _argv(record, "gemini", "gm") == [
        "--approval-mode=yolo", "--skip-trust", "-o", "json", "-m", "gemini-pro-x"]
    assert (record / "gemini.gm.stdin").read_text() == "Edit"
    wt = _argv(record, "opencode", "oc")[2]
    assert _argv(record, "opencode", "oc") == [
        "run", "--dir", wt, "--auto", "--format", "json", "-m", "anthropic/x"]
    assert "/uet/worktrees/" in wt
    assert "opencode error: permission rejected" in log
    assert "matches '(?i)permission denied'" in log
    assert 'status is "refused", not "ok"' in log


def test_tools_override_keeps_the_preset_check_and_header_notices(tmp_path: Path):
    record, env, sandbox = _fakes(tmp_path)
    config = sandbox + '[tools.claude]\ncommand = "claude --my-flags"\n'
    bad = json.dumps({"type": "result", "is_error": True, "result": "refused to edit"})
    repo = setup_repo(tmp_path / "r", config=config, workstreams={
        "cl": {"tool": "claude", "prompt": "x", "env": {"FAKE_STDOUT": bad}},
        "cx": {"tool": "codex", "prompt": "x", "env": {"FAKE_STDOUT": '{"type":"done"}'}}})
    env = {**env, "CODEX_API_KEY": "k", "PIPELINE_DB_PATH": "/tmp/p.db",
           "PIPELINE_ENGINE": "new"}
    proc = run(repo, "run", "--land", "never", env=env)
    assert proc.returncode == 1 and states(repo)["cl"] == "quarantined"
    assert _argv(record, "claude", "cl") == ["--my-flags"]
    assert "refused to edit" in git(repo, "log", "--format=%B",
                                    f"refs/uet/ledger/{last_run(repo)}")
    out = proc.stdout + proc.stderr
    assert out.count("codex: CODEX_API_KEY is set, so each attempt gets its own CODEX_HOME") == 1
    assert "claude: ANTHROPIC_API_KEY" not in out  # [tools.claude] is not the preset
    assert "PIPELINE_DB_PATH is set but uet ignores it: a run's state is its ledger" in out
    assert "PIPELINE_ENGINE is set but uet ignores it: uet has one engine" in out
    assert "UET_PATCH_LEDGER_DIR" not in out


def test_dry_run_prints_each_command_line(tmp_path: Path):
    _record, env, sandbox = _fakes(tmp_path)
    repo = setup_repo(tmp_path / "r", config=sandbox, files={
        "src/m.py": "m\n", "src/n.py": "n\n", "src/skip.txt": "s\n"}, workstreams={
        "cl": {"tool": "claude", "prompt": "x", "acceptance": ["make test | tee log"]},
        "ai": {"tool": "aider", "prompt": "x", "scope": {"allow": ["src/*.py", "a b.py"]}},
        "ai2": {"tool": "aider", "prompt": "x", "scope": {"allow": ["lib/*.py"]}},
        "oc": {"tool": "opencode", "prompt": "x"},
    })
    out = run_ok(repo, "run", "--dry-run", env=env).stdout
    assert ("    runs: claude -p --output-format json --permission-mode acceptEdits "
            "--allowedTools Read Edit Write 'Bash(make test *)' 'Bash(tee log *)' "
            "--disallowedTools 'Bash(git commit *)' 'Bash(git push *)' --max-turns 50 "
            "--no-session-persistence < $LOG/prompt.md") in out
    # the files the globs match at the base, as the real run passes them; none: a placeholder
    assert "--input-history-file $LOG/aider.input -- 'a b.py' src/m.py src/n.py\n" in out
    assert "--input-history-file $LOG/aider.input -- <tracked files matching lib/*.py>" in out
    assert "    runs: opencode run --dir $WORKTREE --auto --format json < $LOG/prompt.md" in out
    assert "    prompt: --message-file (stdin /dev/null)" in out
    assert "    prompt: stdin (the prompt file)" in out
    dry = json.loads(run_ok(repo, "run", "--dry-run", "--json", env=env).stdout.splitlines()[-1])
    by_id = {w["id"]: w for w in dry["workstreams"]}
    assert by_id["oc"]["command_line"].startswith("opencode run --dir $WORKTREE")


def test_attempt_counts_tries_and_worktree_setup(tmp_path: Path):
    record, env, sandbox = _fakes(tmp_path)
    marker = record.parent / "setups"
    config = sandbox + (f'[worktree]\nsetup = ["echo $UET_WORKTREE >> {marker}", "touch .ready"]\n'
                        '[tools.mine]\ncommand = "mine {prompt_file}"\n')
    repo = setup_repo(tmp_path / "r", files={"README.md": "x\n", ".gitignore": ".ready\n"},
                      config=config, workstreams={
                          "fl": {"tool": "mine", "prompt": "x", "retries": 2,
                                 "env": {"FAKE_FAIL_FIRST": "1"},
                                 "acceptance": ["test -f .ready"]},
                          "two": {"command": "test -f .ready && echo ok > two.txt",
                                  "depends_on": ["fl"]}})
    run_ok(repo, "run", "--jobs", "1", env=env)
    assert (record / "mine.fl.attempts").read_text().split() == ["1", "2"]
    assert git(repo, "show", "main:two.txt") == "ok"
    created = marker.read_text().split()
    # once per fresh checkout: the slot reset without keep_ignored lost .ready, so set up again
    assert len(created) >= 2 and all("/uet/worktrees/" in p for p in created)


def test_worktree_setup_failure_and_validate(tmp_path: Path):
    _record, env, sandbox = _fakes(tmp_path)
    repo = setup_repo(tmp_path / "r", config=sandbox + '[worktree]\nsetup = ["exit 7"]\n',
                      workstreams={
                          "a": {"command": "V=$(git rev-parse HEAD) && echo $V > v.txt"},
                          "b": {"tool": "mine", "prompt": "x"}})
    (repo / "uet.toml").write_text(
        sandbox + '[worktree]\nsetup = ["exit 7"]\n[tools.mine]\ncommand = "mine"\n'
        'success = {json = "stdout"}\n')
    out = run(repo, "validate", env=env).stdout
    assert "rev-parse" not in out  # VAR=$(cmd ...) is not taken for a program named rev-parse
    assert "uet.toml: tools.mine.success: " in out and "json needs a field" in out
    (repo / "uet.toml").write_text(
        sandbox + '[worktree]\nsetup = ["exit 7"]\n[tools.mine]\ncommand = "mine"\n')
    git(repo, "commit", "-qam", "valid tool")
    proc = run(repo, "run", "--only", "a", env=env)
    assert proc.returncode != 0
    assert "[worktree] setup command 'exit 7' failed in " in proc.stdout + proc.stderr
