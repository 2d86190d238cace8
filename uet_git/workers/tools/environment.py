"""What every tool gets around it: its environment variables, its block of ports, and a
repository that hides the AI tools' droppings."""

from __future__ import annotations

from pathlib import Path

from uet_git.gitrepo.repo import Repo
from uet_git.spec.models import Config, Workstream

PROMPT_ENV_LIMIT = 64 * 1024  # one environment string may not exceed 128 KiB on Linux

# Files AI tools drop into a repository; hidden through info/exclude (shared by all worktrees).
TOOL_EXCLUDES = (".aider*",)
_EXCLUDE_HEADER = "# added by uet: files AI coding tools leave in worktrees"


def tool_env(ws: Workstream, *, run: str, attempt: int, worktree: Path, worker: int, port: int,
             prompt_file: Path | None = None) -> dict[str, str]:
    """The variables every tool (and setup command) gets, laid over ``os.environ`` by
    ``run_process``: ``UET_RUN``, ``UET_WORKSTREAM``, ``UET_WORKTREE``, ``UET_WORKER``,
    ``UET_PORT`` (the first port of this worker's block), ``UET_ATTEMPT``, ``UET_PROMPT`` (cut at
    64 KiB: exec refuses longer strings; the file is complete), ``UET_PROMPT_FILE``, then
    ``ws.env``."""
    prompt = ws.prompt or ""
    if len(prompt.encode()) > PROMPT_ENV_LIMIT:
        prompt = prompt.encode()[:PROMPT_ENV_LIMIT].decode(errors="ignore")
    env = {
        "UET_RUN": run,
        "UET_WORKSTREAM": ws.id,
        "UET_WORKTREE": str(worktree),
        "UET_WORKER": str(worker),
        "UET_PORT": str(port),
        "UET_ATTEMPT": str(attempt),
        "UET_PROMPT": prompt,
    }
    if prompt_file is not None:
        env["UET_PROMPT_FILE"] = str(prompt_file)
    env.update(ws.env)
    return env


def worker_port(config: Config, worker: int) -> int:
    """The first port of worker ``worker``'s block (``[run] port_base + worker * port_block``)."""
    return config.run.port_base + worker * config.run.port_block


def prepare_repo_for_tools(repo: Repo) -> bool:
    """Add the AI tools' droppings (``.aider*``) to ``info/exclude`` in the common git dir, which
    every worktree shares, so they are never taken as changes and never touch a tracked
    ``.gitignore``. Idempotent (call once per run); returns True when the file changed."""
    exclude = repo.common_dir / "info" / "exclude"
    try:
        text = exclude.read_text()
    except FileNotFoundError:
        text = ""
    present = {line.strip() for line in text.splitlines()}
    missing = [p for p in TOOL_EXCLUDES if p not in present]
    if not missing:
        return False
    exclude.parent.mkdir(parents=True, exist_ok=True)
    add = ("" if not text or text.endswith("\n") else "\n")
    if _EXCLUDE_HEADER not in present:
        add += _EXCLUDE_HEADER + "\n"
    add += "".join(p + "\n" for p in missing)
    with open(exclude, "a") as f:
        f.write(add)
    return True
