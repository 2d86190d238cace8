"""Pydantic models of a workstream file and of ``uet.toml``.

These are the shared vocabulary of every layer; field names are part of the file format.
"""

# No `from __future__ import annotations`: pydantic would evaluate every field's annotation
# from its string when each class is made (a fifth of importing this module).
import re
import unicodedata
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from uet_git.spec import plain
from uet_git.spec.scope import validate_pattern

ID_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
ID_MAX = 100
_ID_RE = re.compile(ID_PATTERN)

BUILTIN_TOOLS = ("shell", "aider", "claude", "codex", "gemini", "opencode")

# Environment variables a workstream may not set for its tool. ``UET_*`` are uet's own (the run,
# the worktree, the process token its kill sweep relies on). The ``GIT_*`` ones would let the
# tool's git escape its worktree or run a program of its choosing: they point git at another
# repository, index, object store or config (the user's checkout, whose refs and config a tool
# must not touch); inject config (``core.hooksPath``, ``core.fsmonitor``, ...); or name programs
# git runs (ssh, askpass, pager, editor, external diff, exec path, templates with hooks).
# Identity (``GIT_AUTHOR_*``, ``GIT_COMMITTER_*``) and tracing are harmless and stay allowed.
FORBIDDEN_ENV: dict[str, str] = {
    **dict.fromkeys(
        ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
         "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_PREFIX",
         "GIT_CEILING_DIRECTORIES", "GIT_DISCOVERY_ACROSS_FILESYSTEM", "GIT_REPLACE_REF_BASE",
         "GIT_NO_REPLACE_OBJECTS", "GIT_GRAFT_FILE", "GIT_SHALLOW_FILE", "GIT_QUARANTINE_PATH"),
        "it points git at another repository than the tool's worktree"),
    **dict.fromkeys(
        ("GIT_CONFIG", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM",
         "GIT_CONFIG_COUNT", "GIT_CONFIG_PARAMETERS"),
        "it changes git's configuration, which may name programs git runs"),
    **dict.fromkeys(
        ("GIT_EXEC_PATH", "GIT_TEMPLATE_DIR", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSH_VARIANT",
         "GIT_ASKPASS", "GIT_EXTERNAL_DIFF", "GIT_PAGER", "GIT_EDITOR", "GIT_SEQUENCE_EDITOR",
         "GIT_PROXY_COMMAND", "GIT_ALLOW_PROTOCOL", "GIT_PROTOCOL_FROM_USER"),
        "it names a program git runs"),
}
_FORBIDDEN_ENV_PREFIXES = (
    ("UET_", "uet sets its own UET_* variables"),
    ("GIT_CONFIG_KEY_", "it changes git's configuration, which may name programs git runs"),
    ("GIT_CONFIG_VALUE_", "it changes git's configuration, which may name programs git runs"),
)


def env_problem(name: str) -> str | None:
    """Why a workstream's ``env`` may not set ``name``, or None when it may."""
    why = FORBIDDEN_ENV.get(name)
    if why is None:
        why = next((w for p, w in _FORBIDDEN_ENV_PREFIXES if name.startswith(p)), None)
    return None if why is None else f"{_short(name)} may not be set ({why})"


def check_id(value: str) -> str:
    """Return ``value`` if it is a valid workstream id, else raise ValueError saying why.

    Ids become ref components (``refs/uet/<state>/RUN/<id>``) and file names, so they are kept
    to a safe lower-case alphabet; the extra rules are git's ref-name rules for that alphabet.
    The message is always one line: the value is shown escaped and truncated.
    """
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {type(value).__name__}")
    if not value:
        raise ValueError("must not be empty")
    if len(value) > ID_MAX:
        raise ValueError(f"{_short(value)!r} is longer than {ID_MAX} characters ({len(value)})")
    # fullmatch, not match: '$' would accept a trailing newline.
    if not _ID_RE.fullmatch(value):
        odd = next((c for c in value if not c.isascii()), None)
        if odd is not None:
            raise ValueError(
                f"{_short(value)!r} contains the non-ASCII character {odd!r} "
                f"(U+{ord(odd):04X}{_char_name(odd)}); ids are [a-z0-9][a-z0-9._-]*"
            )
        raise ValueError(
            f"{_short(value)!r} must match [a-z0-9][a-z0-9._-]* (lower-case letters, digits, . _ -)"
        )
    if ".." in value:
        raise ValueError(f"{value!r} must not contain '..'")
    if value.endswith(".") or value.endswith(".lock"):
        raise ValueError(f"{value!r} must not end with '.' or '.lock'")
    return value


def _char_name(c: str) -> str:
    name = unicodedata.name(c, "")
    return f" {name}" if name else ""


def _short(value: str, n: int = 40) -> str:
    return value if len(value) <= n else value[:n] + "..."


class _Strict(BaseModel):
    # defer_build: a model's validator is built on its first use, not when the class is made
    # (about half of importing this module otherwise; `uet run` validates only a few of them).
    # Plain input is read, and dumped, without building them at all (spec/plain.py: the same
    # models and dicts pydantic gives, pydantic itself on anything else).
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)

    def __init__(self, /, **data: Any) -> None:
        if not (plain.worth_it(type(self)) and plain.fill(self, data)):
            super().__init__(**data)

    # pydantic validates a nested model itself, never through this __init__
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:
        if plain.worth_it(cls) and all(v is None for v in kwargs.values()):
            model = plain.construct(cls, obj)
            if model is not None:
                return model  # type: ignore[return-value]
        return super().model_validate(obj, **kwargs)

    def model_dump(self, *, mode: str = "python", by_alias: bool | None = None,
                   **kwargs: Any) -> dict[str, Any]:
        if not kwargs and plain.worth_it(type(self)):
            out = plain.dump(self, mode=mode, by_alias=by_alias)
            if out is not None:
                return out
        return super().model_dump(mode=mode, by_alias=by_alias, **kwargs)  # type: ignore[arg-type]


class Scope(_Strict):
    """Repository-relative globs. ``**`` spans directories; ``dir/`` means everything below.
    An empty ``allow`` allows every path."""

    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)

    @field_validator("allow", "deny")
    @classmethod
    def _valid_patterns(cls, v: list[str]) -> list[str]:
        for i, p in enumerate(v):
            problem = validate_pattern(p)
            if problem is not None:
                raise ValueError(f"[{i}] {problem}")
        return v


class Workstream(_Strict):
    id: str = Field(
        description="Unique id, [a-z0-9][a-z0-9._-]*, at most 100 characters, no '..', not "
        "ending in '.' or '.lock'.",
        json_schema_extra={"pattern": ID_PATTERN, "maxLength": ID_MAX},
    )
    title: str = ""
    depends_on: list[str] = Field(default_factory=list)
    tool: str = Field(
        default="shell", description="shell | aider | claude | codex | a uet.toml tool"
    )
    command: str | list[str] | None = Field(
        default=None, description="For shell: a string (run by sh -c) or an argv list."
    )
    prompt: str | None = None
    scope: Scope = Field(default_factory=Scope)
    acceptance: list[str] = Field(default_factory=list)
    setup: list[str] = Field(default_factory=list)
    timeout: float = Field(default=900, gt=0, description="Seconds for the tool.")
    retries: int = Field(
        default=0, ge=0, le=20, description="Extra attempts after a tool failure."
    )
    env: dict[str, str] = Field(default_factory=dict)
    estimate: float | None = Field(
        default=None, gt=0, description="Expected seconds, for planning."
    )
    allow_empty: bool = False
    may_change_checks: bool = Field(
        default=False,
        description="The patch may touch uet.toml, .uet/** and [verify] protected paths "
        "(it is still judged by the base's checks).",
    )
    metadata: dict[str, Any] = Field(default_factory=dict)

    # Where the workstream was read from (not part of the file format).
    _source: str | None = PrivateAttr(default=None)

    @field_validator("id")
    @classmethod
    def _valid_id(cls, v: str) -> str:
        return check_id(v)

    @field_validator("depends_on")
    @classmethod
    def _valid_deps(cls, v: list[str]) -> list[str]:
        for i, dep in enumerate(v):
            try:
                check_id(dep)
            except ValueError as exc:
                raise ValueError(f"[{i}] {exc}") from None
        return v

    @field_validator("env")
    @classmethod
    def _valid_env(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            problem = env_problem(name)
            if problem is not None:
                raise ValueError(problem)
        return v

    @property
    def source(self) -> str | None:
        return self._source


class SuccessCheck(_Strict):
    """How a ``[tools.NAME]`` tool's success is read even on exit 0 (many AI tools exit 0 on a
    refusal): ``json`` (a file path, ``{log_dir}`` expanded, or ``stdout``) whose ``field``
    (dotted) must equal ``equals``; or ``regex`` searched in ``stream`` (stdout|stderr) that must
    (``match = true``) or must not (``match = false``) be found."""

    json_: str | None = Field(default=None, alias="json")
    field: str | None = None
    equals: Any = None
    regex: str | None = None
    stream: Literal["stdout", "stderr"] = "stdout"
    match: bool = True

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.json_ is None) == (self.regex is None):
            raise ValueError("give either json (with field and equals) or regex")
        if self.json_ is not None and not self.field:
            raise ValueError("json needs a field")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex: {exc}") from None
        return self


class ToolDef(_Strict):
    """A tool defined in ``[tools.NAME]``: a command template with ``{prompt_file}``,
    ``{files}``, ``{workdir}`` (and ``{log_dir}``, ``{model}``) placeholders."""

    command: str | list[str]
    output: Literal["worktree", "diff", "mbox"] = "worktree"
    env: dict[str, str] = Field(default_factory=dict)
    model: str | None = None
    stdin: Literal["prompt", "null"] = "null"
    success: SuccessCheck | None = None


class PresetConfig(_Strict):
    """``[presets.NAME]``: settings of a built-in preset (claude, codex, aider, gemini,
    opencode). ``model`` is the default when a workstream has no ``metadata.model``;
    ``max_budget_usd`` and ``extra_allowed_tools`` are claude's (``--max-budget-usd``, more
    ``--allowedTools`` rules); ``max_turns`` claude's default turn limit."""

    model: str | None = None
    max_budget_usd: float | None = Field(default=None, gt=0)
    extra_allowed_tools: list[str] = Field(default_factory=list)
    max_turns: int | None = Field(default=None, ge=1)


class RunConfig(_Strict):
    jobs: int = Field(default=4, ge=1, le=256)
    target: str | None = None  # default: the branch checked out in the main worktree
    workstreams: str = "workstreams"
    land: Literal["end", "continuous", "never"] = "end"
    deterministic: bool = False
    port_base: int = Field(default=20000, ge=1024, le=65000)
    port_block: int = Field(default=100, ge=1, le=10000)
    predicted_conflicts: Literal["serialise", "ignore"] = "serialise"


class WorktreeConfig(_Strict):
    root: str | None = None  # default: <git common dir>/uet/worktrees
    keep_ignored: bool = False
    # worktrees stay for the next run (reset to its base: ~60x cheaper than a fresh checkout);
    # `uet run --fresh-worktrees` removes them at the end, `uet gc` removes idle ones
    keep: bool = True
    include: list[str] = Field(default_factory=list)
    # shell commands run once in each new worktree (cwd = the worktree), before any workstream
    setup: list[str] = Field(default_factory=list)
    # shell commands run in a worktree just before uet removes it (--fresh-worktrees, uet gc):
    # undo what setup made outside it (containers, databases); a failure never keeps it
    teardown: list[str] = Field(default_factory=list)


class HooksConfig(_Strict):
    pre_merge: list[str] = Field(default_factory=list, alias="pre-merge")


class VerifyConfig(_Strict):
    max_files: int = Field(default=0, ge=0, description="0 = no limit")
    max_lines: int = Field(default=0, ge=0, description="0 = no limit")
    rerun_on_candidate: bool = True
    # "auto": the speculative queue, its window starting at the run's slots (jobs + [verify]
    # jobs) and adapting (AIMD); N: at most N at once; 1: the one-at-a-time integrator.
    window: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = Field(
        default="auto", description="candidates verified at once")
    jobs: int = Field(default=1, ge=0, le=256, description="verify slots beyond idle workers")
    # K > 1: the queue judges tip + up to K patches as one candidate, bisecting on a failure
    # (bors); for one verifier and a low failure rate. 1: off.
    batch: int = Field(default=1, ge=1, le=256, description="patches judged as one candidate")
    protected: list[str] = Field(
        default_factory=list,
        description="Globs (scope syntax) a patch may touch only with may_change_checks.",
    )

    @field_validator("protected")
    @classmethod
    def _valid_patterns(cls, v: list[str]) -> list[str]:
        for i, p in enumerate(v):
            problem = validate_pattern(p)
            if problem is not None:
                raise ValueError(f"[{i}] {problem}")
        return v

    @model_validator(mode="after")
    def _batch_needs_the_queue(self) -> Self:
        if self.batch > 1 and self.window == 1:
            raise ValueError("batch > 1 needs the verification queue; window = 1 is the "
                             "one-at-a-time integrator")
        return self


class BreakerConfig(_Strict):
    threshold: int = Field(default=3, ge=1, description="Consecutive failures that open it.")


class SandboxConfig(_Strict):
    """How tools (and setup, acceptance and hook commands) are confined: ``bwrap`` (bubblewrap;
    uet falls back to its checks when it is missing) or ``none``. ``writable`` paths (``~``
    expanded) are bound read-write, e.g. caches such as ``~/.cache/pip``."""

    mode: Literal["bwrap", "none"] = "bwrap"
    network: bool = True
    writable: list[str] = Field(default_factory=list)

    @field_validator("writable")
    @classmethod
    def _valid_paths(cls, v: list[str]) -> list[str]:
        for i, p in enumerate(v):
            if not p or "\0" in p:
                raise ValueError(f"[{i}] empty path" if not p else f"[{i}] NUL in path")
            if not (p.startswith("/") or p == "~" or p.startswith("~/")):
                raise ValueError(f"[{i}] {_short(p)!r}: must be absolute or start with ~/")
        return v


EXECUTOR_SCHEMES = ("dask://", "tcp://", "tls://")


class ExecutorConfig(_Strict):
    """Where workers run: ``address`` None = local threads (the default); ``dask://HOST:PORT``
    (plain TCP) or ``tls://HOST:PORT`` = a Dask scheduler (``uet-git[distributed]``).
    ``remote``: a git URL the workers fetch from and push their inbox refs to (default for a
    loopback scheduler: this repository's own ``file://`` URL); ``serve``: ``HOST:PORT`` where
    ``uet serve`` is started for them instead. ``tls_*``: PEM files of the Dask connection
    (required off loopback unless ``insecure``). ``cache``: the workers' mirror and worktree
    directory (default ``~/.cache/uet`` on each worker machine)."""

    address: str | None = None
    remote: str | None = None
    serve: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    insecure: bool = False
    cache: str | None = None

    @field_validator("address")
    @classmethod
    def _valid_address(cls, v: str | None) -> str | None:
        if v is None or v == "local":
            return None
        if not v.startswith(EXECUTOR_SCHEMES) or not v.split("://", 1)[1]:
            raise ValueError(f"{_short(v)!r}: expected local, dask://HOST:PORT or "
                             "tls://HOST:PORT")
        return v

    @model_validator(mode="after")
    def _one_transport(self) -> Self:
        if self.remote and self.serve:
            raise ValueError("remote and serve are exclusive: the workers use one transport")
        return self


class Config(_Strict):
    """``uet.toml`` at the repository root. Every section is optional."""

    run: RunConfig = Field(default_factory=RunConfig)
    worktree: WorktreeConfig = Field(default_factory=WorktreeConfig)
    tools: dict[str, ToolDef] = Field(default_factory=dict)
    presets: dict[str, PresetConfig] = Field(default_factory=dict)
    hooks: HooksConfig = Field(default_factory=HooksConfig)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    @field_validator("presets")
    @classmethod
    def _known_presets(cls, v: dict[str, PresetConfig]) -> dict[str, PresetConfig]:
        known = [t for t in BUILTIN_TOOLS if t != "shell"]
        for name in v:
            if name not in known:
                raise ValueError(f"{name!r} is not a preset (presets: {', '.join(known)})")
        return v
