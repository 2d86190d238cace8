"""Resolving --jobs / --land / dry run from the command line, the environment and uet.toml."""

from __future__ import annotations

import pytest

from uet_git.engine.options import RunOptions, dry_run_requested, resolve_jobs, resolve_land
from uet_git.errors import UetError
from uet_git.spec.models import Config


def test_jobs_precedence():
    cfg = Config.model_validate({"run": {"jobs": 7}})
    assert resolve_jobs(3, cfg, env={"UET_JOBS": "5"}) == 3
    assert resolve_jobs(None, cfg, env={"UET_JOBS": "5", "PIPELINE_MAX_WORKERS": "6"}) == 5
    assert resolve_jobs(None, cfg, env={"PIPELINE_MAX_WORKERS": "6"}) == 6
    assert resolve_jobs(None, cfg, env={}) == 7
    assert resolve_jobs(None, Config(), env={}) == 4


@pytest.mark.parametrize("bad", ["zero", "0", "-2"])
def test_bad_jobs_from_env_is_a_user_error(bad: str):
    with pytest.raises(UetError, match="UET_JOBS"):
        resolve_jobs(None, Config(), env={"UET_JOBS": bad})
    with pytest.raises(UetError, match="--jobs"):
        resolve_jobs(0, Config(), env={})


def test_land_and_dry_run():
    assert resolve_land(None, Config.model_validate({"run": {"land": "never"}})) == "never"
    assert resolve_land("continuous", Config()) == "continuous"
    assert resolve_land(None, Config()) == "end"
    with pytest.raises(UetError):
        resolve_land("sometimes", Config())
    assert dry_run_requested(RunOptions(), env={"PIPELINE_DRY_RUN": "1"})
    assert dry_run_requested(RunOptions(dry_run=True), env={})
    assert not dry_run_requested(RunOptions(), env={"PIPELINE_DRY_RUN": "0"})
