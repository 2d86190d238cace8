"""tree_problems agrees with ``git fsck --strict``: every hostile tree built here is an fsck
error and a reported problem; normal trees are clean for both."""

from __future__ import annotations

import functools
import shutil
import subprocess as sp
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.treecheck import tree_problems

Entry = tuple[bytes, bytes, str]  # (mode, name, oid)


def _write(path: Path, kind: str, data: bytes) -> str:
    proc = sp.run(["git", "hash-object", "-t", kind, "--literally", "-w", "--stdin"], cwd=path,
                  input=data, capture_output=True, check=True)
    return proc.stdout.decode().strip()


def blob(path: Path, data: bytes) -> str:
    return _write(path, "blob", data)


def _key(e: Entry) -> bytes:
    return e[1] + b"/" if e[0].lstrip(b"0") == b"40000" else e[1]


def tree(path: Path, entries: list[Entry], *, sort: bool = True) -> str:
    """A tree object with exactly these raw entries (sorted as git sorts, unless told not)."""
    items = sorted(entries, key=_key) if sort else entries
    data = b"".join(m + b" " + n + b"\0" + bytes.fromhex(o) for m, n, o in items)
    return _write(path, "tree", data)


def base_entries(path: Path) -> list[Entry]:
    out = git(path, "ls-tree", "HEAD")
    entries = []
    for line in out.splitlines():
        meta, name = line.split("\t")
        mode, _kind, oid = meta.split()
        entries.append((mode.lstrip("0").encode(), name.encode(), oid))  # ls-tree pads 40000
    return entries


def fsck_errors(path: Path) -> str:
    """What ``git fsck --strict`` reports: its errors (non-zero exit) and its warnings (a bad
    file mode is only a warning to git, exit 0; uet refuses it all the same)."""
    proc = sp.run(["git", "fsck", "--strict", "--no-dangling"], cwd=path, capture_output=True,
                  text=True)
    found = [ln for ln in proc.stderr.splitlines() if ln.startswith(("error", "warning"))]
    if proc.returncode != 0 and not found:
        found = [proc.stderr.strip() or f"exit {proc.returncode}"]
    return "\n".join(found)


@pytest.fixture(scope="module")
def _clean_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Entry]]:
    """A repository ``git fsck --strict`` finds clean, and its HEAD's root entries."""
    path = make_repo(tmp_path_factory.mktemp("treecheck") / "repo",
                     {"README.md": "hi\n", "src/a.py": "a = 1\n"})
    assert fsck_errors(path) == ""
    return path, base_entries(path)


@pytest.fixture
def repo(_clean_template: tuple[Path, list[Entry]], tmp_path: Path) -> Repo:
    """A byte-for-byte copy of that repository (fsck reads the files: the same bytes get the
    same answer), so what fsck reports later comes from the objects the test adds."""
    path = tmp_path / "repo"
    shutil.copytree(_clean_template[0], path, symlinks=True)
    return Repo.open(path)


@pytest.fixture
def base(_clean_template: tuple[Path, list[Entry]]) -> list[Entry]:
    """``base_entries`` of ``repo``: the copy's HEAD is the template's."""
    return list(_clean_template[1])


def _gitmodules(text: str) -> bytes:
    return text.encode()


SUB_OID = "1" * 40  # a gitlink needs no object


def _hostile(path: Path, case: str) -> list[Entry]:
    """Root entries to add to the base tree for one hostile case."""
    # Written only for the cases that use them: an object no case names changes nothing
    # fsck says (a valid blob or tree, reachable or not), and each is a process.
    @functools.cache
    def f() -> str:
        return blob(path, b"x\n")

    @functools.cache
    def one() -> str:
        return tree(path, [(b"100644", b"f", f())])

    def mod(text: str, name: bytes = b".gitmodules") -> list[Entry]:
        return [(b"100644", name, blob(path, text.encode())), (b"160000", b"sub", SUB_OID)]

    cases: dict[str, object] = {
        "gitmodules-url-option": lambda: mod(
            '[submodule "sub"]\n\tpath = sub\n\turl = --upload-pack=touch /tmp/pwned\n'),
        "gitmodules-path-option": lambda: mod(
            '[submodule "sub"]\n\tpath = -sub\n\turl = https://example.com/s.git\n'),
        "gitmodules-name-dotdot": lambda: mod(
            '[submodule "../../hooks"]\n\tpath = sub\n\turl = https://example.com/s.git\n'),
        "gitmodules-update-command": lambda: mod(
            '[submodule "sub"]\n\tpath = sub\n\turl = https://e.com/s.git\n\tupdate = !rm x\n'),
        "gitmodules-url-escapes-root": lambda: mod(
            '[submodule "sub"]\n\tpath = sub\n\turl = ../../:evil.com/s.git\n'),
        "gitmodules-url-newline": lambda: mod(
            '[submodule "sub"]\n\tpath = sub\n\turl = ./%0ahost=evil.com\n'),
        "gitmodules-url-no-host": lambda: mod(
            '[submodule "sub"]\n\tpath = sub\n\turl = http:///s.git\n'),
        "gitmodules-ntfs-alias": lambda: mod(
            '[submodule "sub"]\n\tpath = sub\n\turl = -oProxyCommand=x\n', b"GITMOD~1"),
        "gitmodules-symlink": lambda: [(b"120000", b".gitmodules", blob(path, b"/etc/passwd"))],
        "gitmodules-tree": lambda: [(b"40000", b".gitmodules", one())],
        "dotgit-upper": lambda: [(b"40000", b".GIT", one())],
        "dotgit-trailing-dot": lambda: [(b"40000", b".git.", one())],
        "dotgit-trailing-space": lambda: [(b"40000", b".git ", one())],
        "dotgit-shortname": lambda: [(b"40000", b"git~1", one())],
        "dotgit-hfs": lambda: [(b"40000", ".g\u200cit".encode(), one())],
        "dotgit-ads": lambda: [(b"100644", b".git::$INDEX_ALLOCATION", f())],
        "dotgit-deep": lambda: [(b"40000", b"deep",
                                 tree(path, [(b"40000", b"GIT~1", one())]))],
        "dot": lambda: [(b"40000", b".", one())],
        "dotdot": lambda: [(b"40000", b"..", one())],
        "empty-name": lambda: [(b"100644", b"", f())],
        "slash-in-name": lambda: [(b"100644", b"a/b", f())],
        "mode-664": lambda: [(b"100664", b"g", f())],
        "mode-bogus": lambda: [(b"100666", b"g", f())],
        "mode-zero-padded": lambda: [(b"0100644", b"g", f())],
        "tree-mode-zero-padded": lambda: [(b"040000", b"t", one())],
        "null-oid": lambda: [(b"100644", b"g", "0" * 40)],
        "gitattributes-long-line": lambda: [
            (b"100644", b".gitattributes", blob(path, b"*" + b"x" * 3000 + b" text\n"))],
    }
    return cases[case]()  # type: ignore[operator]


HOSTILE = [
    "gitmodules-url-option", "gitmodules-path-option", "gitmodules-name-dotdot",
    "gitmodules-update-command", "gitmodules-url-escapes-root", "gitmodules-url-newline",
    "gitmodules-url-no-host", "gitmodules-ntfs-alias", "gitmodules-symlink", "gitmodules-tree",
    "dotgit-upper", "dotgit-trailing-dot", "dotgit-trailing-space", "dotgit-shortname",
    "dotgit-hfs", "dotgit-ads", "dotgit-deep", "dot", "dotdot", "empty-name", "slash-in-name",
    "mode-664", "mode-bogus", "mode-zero-padded", "tree-mode-zero-padded", "null-oid",
    "gitattributes-long-line",
]


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_tree_is_an_fsck_error_and_a_problem(repo: Repo, base: list[Entry],
                                                      case: str) -> None:
    path = repo.workdir
    new = tree(path, base + _hostile(path, case))
    errors = fsck_errors(path)
    assert errors, f"git fsck --strict accepts {case}"
    problems = tree_problems(repo, "HEAD", new)
    assert problems, f"{case}: fsck says {errors}"
    assert all("\n" not in p for p in problems)


def test_duplicate_and_unsorted_entries(repo: Repo, base: list[Entry]) -> None:
    path = repo.workdir
    f = blob(path, b"x\n")
    dup = tree(path, [*base, (b"100644", b"zz", f), (b"100644", b"zz", f)])
    assert any("duplicate entry" in p for p in tree_problems(repo, "HEAD", dup))
    assert "duplicate" in fsck_errors(path)


def test_unsorted_entries(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "r2", {"README.md": "hi\n"})
    repo = Repo.open(path)
    f = blob(path, b"x\n")
    bad = tree(path, [(b"100644", b"b", f), (b"100644", b"a", f)], sort=False)
    assert any("not sorted" in p for p in tree_problems(repo, "HEAD", bad))
    assert "not properly sorted" in fsck_errors(path)


def test_the_problem_names_the_path_and_the_value(repo: Repo, base: list[Entry]) -> None:
    path = repo.workdir
    new = tree(path, base + _hostile(path, "gitmodules-url-option"))
    (line,) = tree_problems(repo, "HEAD", new)
    assert line.startswith(".gitmodules: submodule 'sub' url '--upload-pack=touch /tmp/pwned'")
    deep = tree(path, base + _hostile(path, "dotgit-deep"))
    assert tree_problems(repo, "HEAD", deep) == [
        "deep/GIT~1: entry named like .git (git refuses to check it out)"]


def test_normal_trees_are_clean_for_both(repo: Repo, base: list[Entry]) -> None:
    path = repo.workdir
    f = blob(path, b"x\n")
    exe = blob(path, b"#!/bin/sh\n")
    link = blob(path, b"README.md")
    gm = blob(path, b'[submodule "sub"]\n\tpath = sub\n\turl = https://example.com/s.git\n'
                    b'[submodule "lib/x"]\n\tpath = lib/x\n\turl = ../x.git\n'
                    b'\tupdate = rebase\n')
    attrs = blob(path, b"*.py text eol=lf\n*.png binary\n")
    lib = tree(path, [(b"160000", b"x", SUB_OID), (b"100644", b".gitkeep", f)])
    dotgithub = tree(path, [(b"100644", b"ci.yml", f)])
    entries = [
        *base,
        (b"100644", b".gitmodules", gm), (b"160000", b"sub", SUB_OID),
        (b"100644", b".gitattributes", attrs), (b"100644", b".gitignore", f),
        (b"100644", b".git-blame-ignore-revs", f), (b"40000", b".github", dotgithub),
        (b"100755", b"run.sh", exe), (b"120000", b"link", link), (b"40000", b"lib", lib),
        (b"100644", b"git", f), (b"100644", b".gitx", f), (b"100644", b"git~2", f),
        (b"100644", "naïve.txt".encode(), f),
    ]
    new = tree(path, entries)
    commit = git(path, "commit-tree", new, "-p", "HEAD", "-m", "normal")
    git(path, "update-ref", "refs/heads/normal", commit)
    assert fsck_errors(path) == ""
    assert tree_problems(repo, "HEAD", commit) == []
    assert tree_problems(repo, "HEAD", "HEAD") == []


def test_only_what_new_adds_or_changes_is_checked(repo: Repo, base: list[Entry]) -> None:
    path = repo.workdir
    hostile = tree(path, base + _hostile(path, "dotgit-deep"))
    f = blob(path, b"more\n")
    entries = [*base, *_hostile(path, "dotgit-deep"), (b"100644", b"new.txt", f)]
    on_top = tree(path, entries)
    # base already holds the hostile subtree: an unrelated addition on top is not blamed.
    assert tree_problems(repo, hostile, on_top) == []
    assert tree_problems(repo, "HEAD", on_top) != []
