"""Filter drivers (``filter.<name>.clean/smudge/process``) pinned to what they were at open.

git runs a filter program for every path whose ``.gitattributes`` names the driver: on add,
status, apply, checkout, reset and read-tree. A tool inside a worktree can write both the
attributes and the repository's config, so an unpinned ``git checkout`` uet runs afterwards
would start the tool's program outside any sandbox. The user's own drivers (git-lfs) must keep
working, though: a snapshot has to store the pointer, not the large file.

The rule: a driver is honoured exactly as it was configured when uet opened the repository
(``Repo.open``, before any tool ran); every driver configured since then, and any change to a
pinned one, is blanked. The overrides go in as command-scope config
(``GIT_CONFIG_COUNT``/``KEY``/``VALUE``: above every config file, and safe for any name), and
only when some driver is configured at all. A repository whose config files (every one git
may read there: ``config_files``) mention neither ``filter`` nor ``include`` in any case
has no driver, and no git is asked (``mention_none``: a few small file reads per command).
Otherwise git is asked (``read_filters``), its view cached on the files' stat data; with
``include.*`` in the config it is read every time, since an included file can change.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from uet_git.gitrepo.gitcmd import run_git

_KEYS = ("clean", "smudge", "process", "required")
_QUERY = ["config", "-z", "--get-regexp", r"^(filter|include|includeif)\."]
_ENV = ("HOME", "XDG_CONFIG_HOME", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM",
        "GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_COUNT", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG")


@dataclass(frozen=True)
class FilterConfig:
    """``{(driver, key): value}`` for the four keys of every configured driver, and whether
    the config includes other files."""

    drivers: Mapping[tuple[str, str], str]
    has_includes: bool
    ok: bool = True  # False: git could not read the config there

    @property
    def names(self) -> set[str]:
        return {name for name, _ in self.drivers}


NONE = FilterConfig({}, False)


def config_files(common_dir: Path, git_dir: Path) -> list[Path] | None:
    """Every config file git may read in the repository whose git dir is ``git_dir`` (a
    superset: ``config.worktree`` whether or not it is enabled), or None when the environment
    passes config another way (git must then be asked)."""
    env = os.environ
    if env.get("GIT_CONFIG_COUNT", "0") not in ("", "0"):
        return None
    files = [common_dir / "config", common_dir / "config.worktree", git_dir / "config.worktree"]
    if env.get("GIT_CONFIG_NOSYSTEM", "").lower() not in ("1", "true", "yes", "on"):
        system = env.get("GIT_CONFIG_SYSTEM")
        if system == "":
            return None
        files += [Path(system)] if system else _system_files(env.get("PATH"))
    global_ = env.get("GIT_CONFIG_GLOBAL")
    if global_ is not None:
        if not global_:
            return None
        files.append(Path(global_))
    else:
        home = env.get("HOME")
        if not home:
            return None
        xdg = env.get("XDG_CONFIG_HOME") or f"{home}/.config"
        files += [Path(xdg) / "git" / "config", Path(home) / ".gitconfig"]
    return files


_system_by_path: dict[str | None, list[Path]] = {}


def _system_files(path: str | None) -> list[Path]:
    """The system config of the ``git`` on ``path``: ``/etc/gitconfig`` (prefix ``/usr``)
    or ``PREFIX/etc/gitconfig`` (git's build defaults); both, as a superset."""
    files = _system_by_path.get(path)
    if files is None:
        found = shutil.which("git", path=path)
        files = [Path("/etc/gitconfig")]
        if found:
            files.append(Path(os.path.realpath(found)).parent.parent / "etc" / "gitconfig")
        _system_by_path[path] = files
    return files


def mention_none(files: Sequence[Path]) -> bool:
    """True when no file in ``files`` has ``filter`` or ``include`` in it, in any case: then
    git's view has no driver and no include (section names have no escapes, and are matched
    without case). False on any doubt (an unreadable file)."""
    for f in files:
        try:
            data = f.read_bytes().lower()
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            return False
        if b"filter" in data or b"include" in data:
            return False
    return True


def read_filters(cwd: str | os.PathLike[str], lead: Sequence[str] = ()) -> FilterConfig:
    """The filter drivers git sees when run as ``git LEAD ...`` in ``cwd`` (one process)."""
    proc = run_git([*lead, *_QUERY], cwd=cwd, check=False)
    drivers: dict[tuple[str, str], str] = {}
    includes = False
    for item in proc.stdout.decode(errors="surrogateescape").split("\0"):
        key, _, value = item.partition("\n")
        section, _, rest = key.partition(".")
        if section in ("include", "includeif"):
            includes = True
            continue
        name, _, var = rest.rpartition(".")
        if section == "filter" and name and var in _KEYS:
            drivers[(name, var)] = value  # the last one wins, as in git
    return FilterConfig(drivers, includes, proc.returncode in (0, 1))


def overrides(trusted: FilterConfig, now: FilterConfig) -> list[tuple[str, str]]:
    """Command-scope config making git run ``trusted``'s drivers only, as they were."""
    out: list[tuple[str, str]] = []
    for (name, var), current in sorted(now.drivers.items()):
        value = trusted.drivers.get((name, var))
        if value is None:
            # Config cannot unset a key, only override it; an empty command runs no program.
            # (A ``process`` added to a pinned driver so also turns its ``clean`` off: files
            # are then taken as they are, which is safe.)
            value = "false" if var == "required" else ""
        if current != value:
            out.append((f"filter.{name}.{var}", value))
    return out


def config_env(pairs: Sequence[tuple[str, str]], base: Mapping[str, str]) -> dict[str, str]:
    """``GIT_CONFIG_COUNT``/``KEY_n``/``VALUE_n`` adding ``pairs`` after what ``base`` (the
    environment git would get) already passes that way."""
    try:
        start = int(base.get("GIT_CONFIG_COUNT", "0") or 0)
    except ValueError:
        start = 0
    env = {"GIT_CONFIG_COUNT": str(start + len(pairs))}
    for i, (k, v) in enumerate(pairs, start):
        env[f"GIT_CONFIG_KEY_{i}"] = k
        env[f"GIT_CONFIG_VALUE_{i}"] = v
    return env


def stat_key(common_dir: Path, cwd: str | os.PathLike[str], lead: Sequence[str]) -> tuple:
    """What would change git's view of the config: the config files' stat data and the
    environment that selects them."""
    home = Path(os.environ.get("HOME", "/"))
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    files = [common_dir / "config", common_dir / "config.worktree",
             Path(os.environ.get("GIT_CONFIG_GLOBAL") or home / ".gitconfig"), xdg / "git/config",
             Path(os.environ.get("GIT_CONFIG_SYSTEM") or "/etc/gitconfig")]
    wts = common_dir / "worktrees"
    if wts.is_dir():
        files += sorted(d / "config.worktree" for d in wts.iterdir())
    stats: list[object] = []
    for f in files:
        try:
            st = f.stat()
            stats.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            stats.append(None)
    return (str(cwd), tuple(lead), *(os.environ.get(k) for k in _ENV), *stats)
