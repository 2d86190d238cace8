"""Spec fields that keep a patch from changing what judges it and a tool's env from
redirecting git: may_change_checks, [verify] protected, [sandbox], forbidden env names."""

from __future__ import annotations

from pathlib import Path

import pytest

from uet_git.errors import UetError
from uet_git.spec.load import load_config, load_workstreams
from uet_git.spec.models import FORBIDDEN_ENV, Config, SandboxConfig, Workstream, env_problem


def _load_one(tmp_path: Path, text: str) -> list[str]:
    f = tmp_path / "ws" / "a.yaml"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(text)
    return [str(e) for e in load_workstreams([f]).errors]


def test_may_change_checks_defaults_off() -> None:
    assert Workstream(id="a").may_change_checks is False
    assert Workstream(id="a", may_change_checks=True).may_change_checks is True


@pytest.mark.parametrize("name", ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE",
                                  "GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_3",
                                  "GIT_CONFIG_PARAMETERS", "GIT_EXEC_PATH", "GIT_SSH_COMMAND",
                                  "UET_PROC_TOKEN", "UET_RUN", "UET_ANYTHING"])
def test_env_redirecting_git_or_setting_uet_is_a_one_line_error(tmp_path: Path, name: str) -> None:
    errors = _load_one(tmp_path, f"id: ws-a\ncommand: 'true'\nenv:\n  {name}: x\n")
    assert len(errors) == 1, errors
    line = errors[0]
    assert "\n" not in line
    assert line.startswith(f"{tmp_path / 'ws' / 'a.yaml'}:ws-a: env: {name} may not be set (")


@pytest.mark.parametrize("name", ["GIT_AUTHOR_NAME", "GIT_COMMITTER_EMAIL", "GIT_TRACE",
                                  "PATH", "FEATURE", "UETX", "GIT_DIRX"])
def test_harmless_env_is_allowed(tmp_path: Path, name: str) -> None:
    assert _load_one(tmp_path, f"id: ws-a\ncommand: 'true'\nenv:\n  {name}: x\n") == []
    assert env_problem(name) is None


def test_every_forbidden_name_says_why() -> None:
    for name in FORBIDDEN_ENV:
        problem = env_problem(name)
        assert problem is not None and problem.startswith(f"{name} may not be set (")


def test_protected_globs_are_validated_like_scope(tmp_path: Path) -> None:
    (tmp_path / "uet.toml").write_text('[verify]\nprotected = [".github/**", "tests/"]\n')
    assert load_config(tmp_path).verify.protected == [".github/**", "tests/"]
    (tmp_path / "uet.toml").write_text('[verify]\nprotected = ["ok/**", "../outside"]\n')
    with pytest.raises(UetError) as exc:
        load_config(tmp_path)
    assert "verify.protected[1]" in str(exc.value) and "'..'" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_sandbox_section(tmp_path: Path) -> None:
    assert Config().sandbox == SandboxConfig(mode="bwrap", network=True, writable=[])
    (tmp_path / "uet.toml").write_text(
        '[sandbox]\nmode = "none"\nnetwork = false\nwritable = ["~/.cache/pip", "/opt/c"]\n')
    sb = load_config(tmp_path).sandbox
    assert (sb.mode, sb.network, sb.writable) == ("none", False, ["~/.cache/pip", "/opt/c"])
    for bad in ('mode = "docker"', 'writable = ["relative/dir"]', 'nope = 1'):
        (tmp_path / "uet.toml").write_text(f"[sandbox]\n{bad}\n")
        with pytest.raises(UetError) as exc:
            load_config(tmp_path)
        assert "sandbox" in str(exc.value) and "\n" not in str(exc.value)
