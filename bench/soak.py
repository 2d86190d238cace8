#!/usr/bin/env python3
"""Randomised kill -9 soak of uet: N times, pick one of ``run``/``resume``/``land``/``rollback``
on a small repository, start it as ``uet ...``, SIGKILL it after a random delay, run the
recovery command, and check the invariants with the git CLI:

- ``git fsck --strict`` and ``uet fsck`` clean;
- every workstream in its expected state, each change on ``main`` exactly once (commits counted
  by their ``Uet-Workstream`` trailer), ``main`` and the checkout's HEAD where they must be;
- the user's uncommitted files byte for byte, no ``index.lock`` and no worktree left;
- the recovery command exits 0 or 1 (never 2, 3 or 130) without a traceback.

Prints a tally per command and exits 1 on any violation (each listed with what reproduces it).
Not run by CI (minutes); ``tests/e2e/test_faults.py`` smoke-tests it with ``--kills 2``.

    python bench/soak.py --kills 200 --seed 1
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import shutil
import signal
import subprocess as sp
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# Read when uet's engine is imported: the short retry backoff of the tests.
os.environ.setdefault("UET_RETRY_BACKOFF", "0.05")

from uet_git.cli import main as uet_main

COMMANDS = ("run", "resume", "land", "rollback")
SPECS = {
    "a": "id: a\ncommand: echo a > a.txt\nacceptance: ['test -f a.txt']\n",
    "b": "id: b\ndepends_on: [a]\ncommand: cat a.txt > b.txt; echo b >> b.txt\n",
    "c": "id: c\ncommand: seq 1 200 > c.txt\n",
    "bad": "id: bad\ncommand: echo x > x.txt\nacceptance: ['false']\n",
}
EXPECTED = {"a": "committed", "b": "committed", "c": "committed", "bad": "quarantined"}
LANDS = ["a", "b", "c"]
NOTES = b"the user's uncommitted edit \x00\xff\r\n"
MINE = b"untracked, the user's\n"
# Where a `resume` starts from: a run that died at one of these points (UET_TEST_CRASH_AT).
RESUME_FROM = ("a:created", "a:validated", "a:applied", "b:created", "b:queued",
               "bad:validated", "c:verified", "land", "land:intent")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Soak", "GIT_AUTHOR_EMAIL": "soak@example.com",
    "GIT_COMMITTER_NAME": "Soak", "GIT_COMMITTER_EMAIL": "soak@example.com",
    "GIT_CONFIG_NOSYSTEM": "1", "UET_RETRY_BACKOFF": "0.05",
}


def uet_argv() -> list[str]:
    found = shutil.which("uet")
    return [found] if found else [sys.executable, "-m", "uet_git"]


class Env:
    def __init__(self, home: Path) -> None:
        self.vars = {k: v for k, v in os.environ.items()
                     if not k.startswith(("UET_TEST_", "UET_LEDGER_", "UET_BRANCH_", "GIT_"))}
        self.vars.update(GIT_ENV)
        self.vars["HOME"] = str(home)
        self.vars["XDG_CONFIG_HOME"] = str(home / ".config")


def git(repo: Path, *args: str, check: bool = True) -> str:
    proc = sp.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if check and proc.returncode:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def uet(env: Env, repo: Path, *args: str, crash: str | None = None) -> sp.CompletedProcess[str]:
    """``uet ARGS`` in this process (the recoveries and checks; the same ``main()`` the
    command runs, without a Python start), or, made to die at the point ``crash``
    (``UET_TEST_CRASH_AT``: an ``os._exit(137)`` there, what a kill -9 leaves), in a child
    forked from this process (a template's setup, not one of the kills: those are
    ``kill_after``'s, of new interpreters). Output of a forked run is not kept."""
    if crash:
        return sp.CompletedProcess(["uet", *args], _forked(env, repo, list(args), crash), "", "")
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    code = 0
    try:
        os.chdir(repo)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = _main_code(list(args))
    finally:
        os.chdir(old)
    reap()
    return sp.CompletedProcess(["uet", *args], code, out.getvalue(), err.getvalue())


def _main_code(args: list[str]) -> int:
    try:
        uet_main(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def _forked(env: Env, repo: Path, args: list[str], crash: str) -> int:
    """The exit code of ``uet ARGS`` run in a forked child with ``UET_TEST_CRASH_AT=crash``
    (no thread of uet runs between two commands here, so the child has none missing)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.chdir(repo)
            os.environ.clear()
            os.environ.update({**env.vars, "UET_TEST_CRASH_AT": crash})
            code = _main_code(args)
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def reap() -> None:
    """Once uet ran a tool in this process it is a child subreaper: collect what a killed
    ``uet`` left behind and was re-parented here."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def new_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    files = {"README.md": "hello\n", "notes.txt": "notes\n",
             **{f"workstreams/{ws}.yaml": text for ws, text in SPECS.items()}}
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    (path / "notes.txt").write_bytes(NOTES)
    (path / "mine.txt").write_bytes(MINE)
    return path


def only_run(repo: Path) -> str | None:
    runs = git(repo, "for-each-ref", "--format=%(refname:lstrip=3)", "refs/uet/ledger/").split()
    return runs[0] if len(runs) == 1 else None


def states(repo: Path, run_id: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for ref in git(repo, "for-each-ref", "--format=%(refname)", "refs/uet/").splitlines():
        parts = ref.split("/")
        if len(parts) == 5 and parts[3] == run_id and parts[2] != "patches":
            found[parts[4]] = parts[2]
    return found


def landed(repo: Path) -> list[str]:
    out = git(repo, "log", "--format=%(trailers:key=Uet-Workstream,valueonly)", "main")
    return sorted(line.strip() for line in out.splitlines() if line.strip())


@dataclass
class Templates:
    root: Path
    env: Env
    cache: dict[str, Path] = field(default_factory=dict)

    def fresh(self) -> Path:
        return self._get("fresh", lambda p: None)

    def unlanded(self) -> Path:
        return self._get("unlanded", lambda p: self._expect(
            uet(self.env, p, "run", "--jobs", "2", "--land", "never", "--fresh-worktrees"), 1))

    def landed(self) -> Path:
        def make(p: Path) -> None:
            # copied: worktrees are registered under the path they were made at
            self._expect(uet(self.env, p, "run", "--jobs", "2", "--fresh-worktrees"), 1)
        return self._get("landed", make)

    def crashed(self, point: str, dest: Path) -> Path:
        """A run that died at ``point``, made in ``dest`` (not copied: a crashed run's
        worktrees are registered under the path they were made at)."""
        shutil.copytree(self.fresh().parent, dest)
        self._expect(uet(self.env, dest / "r", "run", "--jobs", "2", crash=point), 137)
        return dest / "r"

    def _expect(self, proc: sp.CompletedProcess[str], code: int) -> None:
        if proc.returncode != code:
            raise RuntimeError(f"template: {proc.args} exited {proc.returncode}, wanted "
                               f"{code}\n{proc.stdout}{proc.stderr}")

    def _get(self, name: str, make: object) -> Path:
        if name not in self.cache:
            path = new_repo(self.root / name / "r")
            make(path)  # type: ignore[operator]
            self.cache[name] = path
        return self.cache[name]


@dataclass
class Outcome:
    command: str
    delay: float
    killed: bool  # False: it had finished before the signal
    problems: list[str]


def kill_after(env: Env, repo: Path, args: list[str], delay: float) -> bool:
    proc = sp.Popen([*uet_argv(), *args], cwd=repo, env=env.vars, stdin=sp.DEVNULL,
                    stdout=sp.DEVNULL, stderr=sp.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=delay)
        return False
    except sp.TimeoutExpired:
        pass
    # The whole process group: uet and the tools it started die together, as with a power
    # cut (resume must cope with what they left); a tool in a session of its own survives.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def check(env: Env, repo: Path, run_id: str | None, *, rolled_back: bool) -> list[str]:
    problems: list[str] = []
    base = git(repo, "rev-list", "--max-parents=0", "main")
    fsck = sp.run(["git", "fsck", "--strict", "--no-progress"], cwd=repo, capture_output=True,
                  text=True)
    if fsck.returncode or "error" in fsck.stderr.lower():
        problems.append(f"git fsck --strict: {(fsck.stdout + fsck.stderr).strip()[:300]}")
    u = uet(env, repo, "fsck")
    if u.returncode:
        problems.append(f"uet fsck exit {u.returncode}: {(u.stdout + u.stderr).strip()[:300]}")
    if run_id is None:
        problems.append("no run recorded after the recovery")
        return problems
    want_states = dict(EXPECTED)
    if rolled_back:
        want_states.update({ws: "rolled-back" for ws in LANDS})
    got = states(repo, run_id)
    if got != want_states:
        problems.append(f"states {got} != {want_states}")
    on_main = landed(repo)
    want_main = [] if rolled_back else LANDS
    if on_main != want_main:
        problems.append(f"landed on main {on_main} != {want_main} (each exactly once)")
    main = git(repo, "rev-parse", "main")
    want_at = base if rolled_back else git(repo, "rev-parse", f"refs/uet/integration/{run_id}")
    if main != want_at:
        problems.append(f"main at {main[:12]}, wanted {want_at[:12]}")
    if git(repo, "rev-parse", "HEAD") != main:
        problems.append("the checkout's HEAD is not main")
    if (repo / "notes.txt").read_bytes() != NOTES or (repo / "mine.txt").read_bytes() != MINE:
        problems.append("the user's uncommitted files changed")
    status = git(repo, "status", "--porcelain", "--untracked-files=all")
    if sorted(line.strip() for line in status.splitlines()) != ["?? mine.txt", "M notes.txt"]:
        problems.append(f"git status shows more than the user's work: {status!r}")
    if (repo / ".git" / "index.lock").exists():
        problems.append(".git/index.lock left")
    kept = f"{repo / '.git' / 'uet' / 'worktrees'}/"  # [worktree] keep: uet's own locked slots
    if any(not (w.startswith(kept) and w.endswith("locked"))
           for w in git(repo, "worktree", "list").splitlines()[1:]):
        problems.append(f"worktrees left: {git(repo, 'worktree', 'list')}")
    return problems


def recover(env: Env, repo: Path, command: str, run_id: str | None) -> tuple[str | None,
                                                                             list[str]]:
    """The recovery a user would run after a kill of ``command``; returns the run id and any
    problem with the recovery command itself."""
    problems: list[str] = []
    steps: list[list[str]]
    if command in ("run", "resume"):
        steps = [["resume", run_id]] if run_id else [["run", "--jobs", "2"]]
    elif command == "land":
        steps = [["land", run_id or ""]]
    else:
        steps = [["rollback", run_id or ""]]
    for args in steps:
        proc = uet(env, repo, *args)
        if proc.returncode not in (0, 1) or "Traceback" in proc.stderr:
            problems.append(f"`uet {' '.join(args)}` exit {proc.returncode}: "
                            f"{(proc.stdout + proc.stderr).strip()[-400:]}")
        run_id = run_id or only_run(repo)
    # What the user does next when the recovery only undid the interrupted move.
    if run_id and command in ("land", "run", "resume") and git(
            repo, "rev-parse", "main") != git(repo, "rev-parse", f"refs/uet/integration/{run_id}"):
        proc = uet(env, repo, "land", run_id)
        if proc.returncode:
            problems.append(f"`uet land` after the recovery exit {proc.returncode}: "
                            f"{proc.stderr.strip()[-300:]}")
    if run_id and command == "rollback" and states(repo, run_id).get("a") != "rolled-back":
        proc = uet(env, repo, "rollback", run_id)
        if proc.returncode:
            problems.append(f"`uet rollback` again exit {proc.returncode}: "
                            f"{proc.stderr.strip()[-300:]}")
    return run_id, problems


def one(t: Templates, rng: random.Random, i: int, durations: dict[str, float]) -> Outcome:
    command = rng.choice(COMMANDS)
    start_at = ""
    dest = t.root / f"k{i:04d}"
    if command == "resume":
        start_at = rng.choice(RESUME_FROM)
        repo = t.crashed(start_at, dest)
    else:
        src = {"run": t.fresh, "land": t.unlanded, "rollback": t.landed}[command]()
        shutil.copytree(src.parent, dest)
        repo = dest / "r"
    run_id = only_run(repo)
    args = {"run": ["run", "--jobs", "2"], "resume": ["resume", run_id or ""],
            "land": ["land", run_id or ""], "rollback": ["rollback", run_id or ""]}[command]
    delay = rng.uniform(0.02, durations[command] * 0.9)
    killed = kill_after(t.env, repo, args, delay)
    run_id = only_run(repo)
    run_id, problems = recover(t.env, repo, command, run_id)
    problems += check(t.env, repo, run_id, rolled_back=command == "rollback")
    label = command + (f" (from a crash at {start_at})" if start_at else "")
    out = Outcome(label, delay, killed, problems)
    if not problems:
        shutil.rmtree(repo.parent, ignore_errors=True)
    return out


def calibrate(t: Templates) -> dict[str, float]:
    """How long each command takes uninterrupted here (the kill delay is drawn up to it)."""
    took: dict[str, float] = {}
    for command, args in (("run", ["run", "--jobs", "2"]), ("resume", ["resume"]),
                          ("land", ["land"]), ("rollback", ["rollback"])):
        repo = t.root / f"calibrate-{command}"
        if command == "resume":
            t.crashed("a:created", repo)
        else:
            src = {"run": t.fresh, "land": t.unlanded, "rollback": t.landed}[command]()
            shutil.copytree(src.parent, repo)
        t0 = time.monotonic()
        sp.run([*uet_argv(), *args], cwd=repo / "r", capture_output=True, env=t.env.vars,
               stdin=sp.DEVNULL, timeout=300)
        took[command] = max(time.monotonic() - t0, 0.2)
        shutil.rmtree(repo, ignore_errors=True)
    return took


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=200, help="iterations (default 200)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where the repositories go (default: a temporary directory); "
                         "those with a violation are kept")
    ap.add_argument("--max-delay", type=float, default=None,
                    help="draw every kill delay from [0, SECONDS] instead of measuring how "
                         "long each command takes uncut first")
    ap.add_argument("--progress", action="store_true", help="one line per iteration")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="uet-soak-", dir=args.workdir))
    (root / "home").mkdir()
    t = Templates(root, Env(root / "home"))
    os.environ.clear()
    os.environ.update(t.env.vars)
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    durations = (calibrate(t) if args.max_delay is None
                 else {c: args.max_delay / 0.9 for c in COMMANDS})
    print("uncut durations: " + ", ".join(f"{k} {v:.2f}s" for k, v in durations.items()))
    tally: dict[str, Counter[str]] = {c: Counter() for c in COMMANDS}
    violations: list[tuple[int, Outcome]] = []
    for i in range(args.kills):
        out = one(t, rng, i, durations)
        c = tally[out.command.split()[0]]
        c["tries"] += 1
        c["killed" if out.killed else "finished first"] += 1
        c["violations" if out.problems else "recovered ok"] += 1
        if out.problems:
            violations.append((i, out))
        if args.progress:
            print(f"[{i + 1}/{args.kills}] {out.command}: "
                  f"{'killed' if out.killed else 'finished'} after {out.delay:.2f} s, "
                  f"{'VIOLATION ' + '; '.join(out.problems) if out.problems else 'ok'}",
                  flush=True)
    print(f"\nkill -9 soak: {args.kills} iterations, seed {args.seed}, "
          f"{time.monotonic() - t0:.0f} s\n")
    cols = ("tries", "killed", "finished first", "recovered ok", "violations")
    print(f"{'command':10}" + "".join(f"{c:>16}" for c in cols))
    for command in COMMANDS:
        print(f"{command:10}" + "".join(f"{tally[command][c]:>16}" for c in cols))
    total = Counter[str]()
    for c in tally.values():
        total.update(c)
    print(f"{'total':10}" + "".join(f"{total[c]:>16}" for c in cols))
    print(f"\nviolations: {len(violations)}")
    for i, out in violations:
        print(f"- iteration {i} ({out.command}, SIGKILL after {out.delay:.3f} s, kept in "
              f"{root / f'k{i:04d}'}):")
        for p in out.problems:
            print(f"    {p}")
    if not violations:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
