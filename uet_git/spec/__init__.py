"""Workstream spec: models, loaders, scope patterns, the legacy bundle reader and converter."""

from uet_git.spec.legacy import LegacyOutcome, from_legacy, is_legacy
from uet_git.spec.load import (
    LoadResult,
    SpecIssue,
    config_issues,
    default_paths,
    load_config,
    load_workstreams,
)
from uet_git.spec.models import (
    BreakerConfig,
    Config,
    HooksConfig,
    RunConfig,
    Scope,
    ToolDef,
    VerifyConfig,
    Workstream,
    WorktreeConfig,
    check_id,
)
from uet_git.spec.scope import in_scope, matches, patterns_overlap, validate_pattern

__all__ = [
    "BreakerConfig",
    "Config",
    "HooksConfig",
    "LegacyOutcome",
    "LoadResult",
    "RunConfig",
    "Scope",
    "SpecIssue",
    "ToolDef",
    "VerifyConfig",
    "Workstream",
    "WorktreeConfig",
    "check_id",
    "config_issues",
    "default_paths",
    "from_legacy",
    "in_scope",
    "is_legacy",
    "load_config",
    "load_workstreams",
    "matches",
    "patterns_overlap",
    "validate_pattern",
]
