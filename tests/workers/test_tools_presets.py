"""The presets' pure parts: claude's rule splitting, the output checks of aider, gemini and
opencode, custom success checks, the result summary, the notices, the dry-run command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from uet_git.spec.load import seed_env_notices
from uet_git.spec.models import Config, PresetConfig, SuccessCheck, ToolDef, Workstream
from uet_git.workers.tools import (
    aider,
    check_tool,
    claude,
    config_dir_notices,
    describe_invocation,
    gemini,
    opencode,
    result_summary,
)
from uet_git.workers.tools.base import first_word
from uet_git.workers.tools.template import success_check


def test_claude_splits_compound_commands() -> None:
    split = claude.split_compound
    assert split("a && b || c | d; e & f\ng") == ["a", "b", "c", "d", "e", "f", "g"]
    assert split("pytest -q 2>&1 | tee 'a|b.log'") == ["pytest -q 2>&1", "tee 'a|b.log'"]
    assert split('echo "x && y" \\; z') == ['echo "x && y" \\; z']
    assert split("make &>out") == ["make &>out"]
    assert claude.allowed_bash_rules(["a && b", "b", "c"]) == [
        "Bash(a *)", "Bash(b *)", "Bash(c *)"]


def test_aider_fails_on_its_error_lines_only() -> None:
    assert aider.check_result(b"Applied edit to a.py\n") is None
    assert aider.check_result(b"ok\nlitellm.NotFoundError: model x\n") == (
        "aider reported an error: litellm.NotFoundError: model x")
    assert aider.check_result(b"The API provider is not able to authenticate you. Check\n")
    assert aider.check_result(b"I fixed the error handling in api.py\n") is None


def test_gemini_and_opencode_checks() -> None:
    assert gemini.check_result(b'{"response": "ok", "stats": {}}') is None
    assert gemini.check_result(b'{"error": {"message": "quota"}}') == (
        "gemini reported an error: quota")
    assert gemini.check_result(b"") == "gemini printed no JSON result (did its flags change?)"
    assert opencode.check_result(b'{"type":"text"}\n{"type":"step_finish"}\n') is None
    assert opencode.check_result(b'{"type":"permission.rejected"}\n') == (
        "opencode: a permission was rejected (permission.rejected)")
    assert opencode.check_result(b"plain text") == (
        "opencode printed no JSON events (did its flags change?)")


def test_success_checks(tmp_path: Path) -> None:
    (tmp_path / "tool.stderr").write_text("Permission denied\n")
    (tmp_path / "r.json").write_text(json.dumps({"result": {"is_error": False}}))
    regex = success_check(SuccessCheck(regex="denied", stream="stderr", match=False), {}, tmp_path)
    assert regex(b"") == "its stderr matches 'denied'"
    must = success_check(SuccessCheck(regex="^done", match=True), {}, tmp_path)
    assert must(b"done\n") is None and must(b"nope") == "its stdout does not match '^done'"
    js = success_check(SuccessCheck.model_validate(
        {"json": "{log_dir}/r.json", "field": "result.is_error", "equals": False}),
        {"log_dir": str(tmp_path)}, tmp_path)
    assert js(b"") is None
    out = success_check(SuccessCheck.model_validate(
        {"json": "stdout", "field": "status", "equals": "ok"}), {}, tmp_path)
    assert out(b'{"status": "no"}') == 'stdout: status is "no", not "ok"'
    assert out(b'{"x": 1}') == "stdout has no field 'status'"
    with pytest.raises(ValidationError, match="either json"):
        SuccessCheck()
    with pytest.raises(ValidationError, match="regex"):
        SuccessCheck(regex="(")


def test_config_presets_and_result_summary() -> None:
    with pytest.raises(ValidationError, match="'vim' is not a preset"):
        Config.model_validate({"presets": {"vim": {}}})
    cfg = Config.model_validate({"presets": {"claude": {"max_budget_usd": 1, "model": "m"}}})
    assert cfg.presets["claude"] == PresetConfig(max_budget_usd=1, model="m")
    assert result_summary(json.dumps({"total_cost_usd": 0.5, "num_turns": 1,
                                      "session_id": "s"}).encode()) == (
        "cost $0.5000, 1 turn, session s")
    assert result_summary(b'{"response": "x"}') is None


def test_notices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    wss = [Workstream(id="a", tool="claude", prompt="p"), Workstream(id="b", tool="claude")]
    assert len(config_dir_notices(wss, Config())) == 1
    assert config_dir_notices([Workstream(id="a", tool="claude", env={
        "CLAUDE_CONFIG_DIR": "/x"})], Config()) == []
    assert config_dir_notices(wss, Config(tools={"claude": ToolDef(command="c")})) == []
    assert seed_env_notices({"UET_PATCH_LEDGER_DIR": "/x", "OTHER": "1"}) == [
        "UET_PATCH_LEDGER_DIR is set but uet ignores it: patches are commits under refs/uet/ "
        "in the repository (`uet fsck`, `uet gc` look after them)"]


def test_validate_accepts_command_substitution_assignments() -> None:
    assert first_word("V=$(git rev-parse HEAD) && echo $V") is None
    assert first_word("V=`date` echo") is None
    assert first_word("FOO=1 mytool --x") == "mytool"
    assert check_tool(Workstream(id="a", command="V=$(git rev-parse HEAD) && x"), Config()) is None


def test_describe_invocation_writes_nothing(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    text, via = describe_invocation(Workstream(id="a", tool="gemini", prompt="p",
                                               metadata={"model": "g 1"}), Config())
    assert (text, via) == ("gemini --approval-mode=yolo --skip-trust -o json -m 'g 1' "
                           "< $LOG/prompt.md", "stdin (the prompt file)")
    describe_invocation(Workstream(id="a", tool="claude", prompt="p"), Config())
    assert list(tmp_path.iterdir()) == []
