"""The in-process ref reads (``Repo.read_ref``, ``rev_parse``, ``current_branch``,
``for_each_ref``) give exactly the git CLI's answer on real repositories: loose, packed,
symbolic, deleted, planted and broken refs, packed-refs rewritten between two reads, linked
worktrees. Where they cannot be sure they step aside for git; where they can, no process
starts (checked with no git on PATH)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from tests.conftest import git, make_repo
from uet_git.gitrepo import looserefs
from uet_git.gitrepo.gitcmd import GitError
from uet_git.gitrepo.refs import for_each_ref, for_each_ref_git
from uet_git.gitrepo.repo import Repo

NAMES = [
    "refs/heads/main", "refs/heads/a", "refs/heads/a-b", "refs/heads/x-g1234",
    "refs/tags/v1", "refs/uet/ledger/r1", "refs/uet/queued/r1/ws", "refs/uet/ledger/r2",
    # Where git's reading of a full name goes when no ref of exactly that name exists.
    "refs/heads/refs/uet/ledger/r2", "refs/tags/refs/heads/gone",
    "refs/remotes/refs/heads/far/HEAD", "refs/refs/heads/twice",
]
QUERIES = [*NAMES, "refs/heads/gone", "refs/heads/far", "refs/heads/twice", "refs/nope/x",
           "refs/heads", "refs/uet"]
_OID = re.compile(r"[0-9a-f]{40}")
_HEX40 = re.compile(rb"[0-9a-fA-F]{40}")
PATTERNS = [(), ("refs/uet/",), ("refs/heads/",), ("refs/uet/ledger/r1",), ("refs/heads/a",),
            ("refs/uet/ledger/", "refs/tags/"), ("refs/tags",)]


def _git_rev_parse(repo: Repo, rev: str) -> str | None:
    proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "--end-of-options", rev],
                          cwd=repo.workdir, capture_output=True, text=True)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def _cat_file(git_dir: Path, names: list[str]) -> list[str] | None:
    """``git cat-file --batch-check`` of ``names``: a line each, None when it failed."""
    proc = subprocess.run(["git", f"--git-dir={git_dir}", "cat-file",
                           "--batch-check=%(objectname)"], capture_output=True, text=True,
                          input="".join(f"{n}\n" for n in names))
    lines = proc.stdout.splitlines()
    return lines if proc.returncode == 0 and len(lines) == len(names) else None


def _ids_in_files(git_dir: Path) -> list[str]:
    """Every 40-hex string in the git dir's files but the objects, reflogs and hooks: each id
    a ref there can resolve to is among them."""
    found: set[str] = set()
    for top, dirs, files in os.walk(git_dir):
        if top == str(git_dir):
            dirs[:] = [d for d in dirs if d not in ("objects", "logs", "hooks")]
        for name in files:
            try:
                data = Path(top, name).read_bytes()
            except OSError:
                continue  # a symbolic link to nowhere: no id in it
            found.update(m.decode().lower() for m in _HEX40.findall(data))
    return sorted(found)


def _git_rev_parses(repo: Repo, names: list[str], commits: list[str]) -> dict[str, str | None]:
    """``_git_rev_parse`` of each of ``names`` and of ``NAME^{commit}`` for each of
    ``commits``, in two or three git processes instead of one each.

    ``cat-file --batch-check`` reads each line with the resolver ``rev-parse --verify`` uses
    (``get_oid_with_context``: the same dwim rules, describe names, peeling; git's
    builtin/cat-file.c and builtin/rev-parse.c), then looks the object up. So an id it
    prints is rev-parse's answer, and "missing" after ``^{commit}`` is rev-parse's failure
    (peeling read the object). A plain name it calls missing is either no ref (rev-parse
    fails) or a ref to an absent object (rev-parse prints the id unread): the ids the ref
    files mention are asked in the same batch, and when some are absent the names in doubt
    are asked again in a copy of the git dir where each absent id is replaced (``refs/
    replace/``) by an object it has, so a ref to one is found there. Whatever this does not
    cover (cat-file failed, a line it does not print here) goes to rev-parse name by name.
    ``test_batched_git_answers_are_rev_parse_answers`` holds the two equal."""
    queries = [*names, *(f"{n}^{{commit}}" for n in commits)]
    ids = _ids_in_files(repo.common_dir)
    lines = _cat_file(repo.common_dir, [*queries, *ids])
    if lines is None:
        return {q: _git_rev_parse(repo, q) for q in queries}
    present = [i for i, line in zip(ids, lines[len(queries):], strict=True) if line == i]
    absent = [i for i in ids if i not in present]
    out: dict[str, str | None] = {}
    doubt: list[str] = []
    for q, line in zip(queries, lines[:len(queries)], strict=True):
        if _OID.fullmatch(line):
            out[q] = line
        elif line != f"{q} missing":
            out[q] = _git_rev_parse(repo, q)
        elif q.endswith("^{commit}") or not absent:
            out[q] = None
        elif re.search(r"[\^~:@]", q):
            out[q] = _git_rev_parse(repo, q)  # a replaced object would be read, peeled
        else:
            doubt.append(q)
    out.update(_with_absent_replaced(repo, doubt, absent, present))
    return out


def _with_absent_replaced(repo: Repo, names: list[str], absent: list[str],
                          present: list[str]) -> dict[str, str | None]:
    if not names:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "git"
        shutil.copytree(repo.common_dir, copy, symlinks=True,
                        ignore=shutil.ignore_patterns("hooks", "logs"))
        # An object it has: one a ref names, else a loose object's file name.
        loose = sorted(f"{d.name}{f.name}" for d in (copy / "objects").glob("[0-9a-f]" * 2)
                       for f in d.iterdir())
        stand_in = [*present, *(o for o in loose if _OID.fullmatch(o))][:1]
        lines = None
        if stand_in and not (copy / "refs" / "replace").exists():
            (copy / "refs" / "replace").mkdir()
            for oid in absent:
                (copy / "refs" / "replace" / oid).write_text(stand_in[0] + "\n")
            lines = _cat_file(copy, names)
    if lines is None:
        return {n: _git_rev_parse(repo, n) for n in names}
    return {n: (line if line in absent else
                None if line == f"{n} missing" else _git_rev_parse(repo, n))
            for n, line in zip(names, lines, strict=True)}


def _git_branch(repo: Repo) -> str | None:
    proc = subprocess.run(["git", "symbolic-ref", "--quiet", "--short", "HEAD"],
                          cwd=repo.workdir, capture_output=True, text=True)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def _git_for_each_ref(repo: Repo, patterns: tuple[str, ...]) -> dict[str, str] | str:
    proc = subprocess.run(["git", "for-each-ref", "--format=%(objectname) %(refname)",
                           "--end-of-options", *patterns],
                          cwd=repo.workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        return "git failed"
    # A name listed twice (a planted packed-refs): the last line wins, as in for_each_ref.
    pairs = dict((n, o) for o, _, n in (ln.partition(" ") for ln in proc.stdout.splitlines()))
    return dict(sorted(pairs.items()))


def _state(repo: Repo) -> bytes:
    """Every byte of the git dir but the reflogs (timestamps; nothing asked reads them):
    what git's answers to ``_git_answers`` depend on, the objects included (its digest). Two
    repositories alike here get the same answers from git."""
    parts: list[bytes] = []
    root = repo.common_dir
    for top, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(top, root)
        if rel == "logs":
            dirs.clear()
            continue
        parts.append(b"D " + os.fsencode(rel))
        for name in sorted([*dirs, *files]):
            path = os.path.join(top, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode):
                continue  # walked in turn
            data = os.fsencode(os.readlink(path)) if stat.S_ISLNK(mode) else (
                Path(path).read_bytes())
            parts.append(b"F %s %o %d " % (os.fsencode(name), mode, len(data)) + data)
    return hashlib.sha256(b"\0".join(parts)).digest()


# git's answers by repository state (``_state``): the examples start alike and most ops leave
# a state seen before (a delete of no ref, a failed update), so git is asked once per state.
_ANSWERS: dict[bytes, tuple] = {}


def _git_answers(repo: Repo, state: bytes) -> tuple:
    if state not in _ANSWERS:
        _ANSWERS[state] = (_git_rev_parses(repo, QUERIES, QUERIES[:6]), _git_branch(repo),
                           [_git_for_each_ref(repo, pats) for pats in PATTERNS])
    return _ANSWERS[state]


class _StartsAProcess(Exception):
    pass


# The audit hook's switch and what it saw.
_probe = {"hooked": False, "refuse": False, "watch": False, "started": False}


def _on_audit(event: str, args: object) -> None:
    if event == "subprocess.Popen" and (_probe["watch"] or _probe["refuse"]):
        _probe["started"] = True
        if _probe["refuse"]:
            raise _StartsAProcess(args)


def _read(read: Callable[[], object], *, refuse: bool) -> tuple[object, bool]:
    """``read()``'s answer and whether it started a process (uet stepping aside for git);
    with ``refuse`` the process is not started and the answer is None."""
    if not _probe["hooked"]:
        sys.addaudithook(_on_audit)  # an audit hook stays: it acts only in here
        _probe["hooked"] = True
    _probe.update(refuse=refuse, watch=True, started=False)
    try:
        if not refuse:
            return read(), bool(_probe["started"])
        with contextlib.suppress(Exception):
            read()
        return None, bool(_probe["started"])
    finally:
        _probe.update(refuse=False, watch=False)


# (state, read) pairs uet answered by asking git, and gave git's answer.
_ASKED_GIT: set[tuple[bytes, str]] = set()


def _listing(repo: Repo, pats: tuple[str, ...]) -> dict[str, str] | str:
    try:
        return for_each_ref(repo, *pats)
    except GitError:
        return "git failed"


def _same_as_git(repo: Repo) -> None:
    """Each read of uet's gives git's answer. A read uet hands to git (it starts a process)
    is checked once per state: it is git's own answer unless uet asks it wrongly, and the
    same command on the same bytes answers the same; what uet answers in process is checked
    every time (a cache of its own could be stale)."""
    state = _state(repo)
    reads, branch, listings = _git_answers(repo, state)
    checks: list[tuple[str, Callable[[], object], object]] = [
        *((f"read_ref {n}", partial(repo.read_ref, n), reads[n]) for n in QUERIES),
        *((f"rev_parse {n}", partial(repo.rev_parse, n), reads[f"{n}^{{commit}}"])
          for n in QUERIES[:6]),
        ("current_branch", repo.current_branch, branch),
        *((f"for_each_ref {pats}", partial(_listing, repo, pats), theirs)
          for pats, theirs in zip(PATTERNS, listings, strict=True)),
    ]
    for what, read, theirs in checks:
        if (state, what) in _ASKED_GIT and _read(read, refuse=True)[1]:
            continue  # asks git again: checked on these bytes
        ours, asked_git = _read(read, refuse=False)
        assert ours == theirs, what
        if asked_git:
            _ASKED_GIT.add((state, what))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_repo(tmp_path_factory.mktemp("reads") / "r", {"a.txt": "a\n"})
    git(path, "commit", "-q", "--allow-empty", "-m", "second")
    git(path, "tag", "-a", "-m", "annotated", "annotated")
    return path


def _fresh(template: Path, where: Path) -> Repo:
    shutil.copytree(template, where, symlinks=True)
    return Repo.open(where)


@pytest.fixture(scope="module")
def template_oids(template: Path) -> list[str]:
    return _oids(Repo.open(template))  # each example's repository is a copy: the same ids


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError:
        pass  # a directory/file conflict with a ref already there: nothing planted


def _oids(repo: Repo) -> list[str]:
    """A commit, its parent, a tree, an annotated tag, a missing object."""
    w = repo.workdir
    return [git(w, "rev-parse", "HEAD"), git(w, "rev-parse", "HEAD~1"),
            git(w, "rev-parse", "HEAD^{tree}"), git(w, "rev-parse", "annotated"), "e" * 40]


def _apply(repo: Repo, op: tuple, oids: list[str]) -> None:
    w = repo.workdir
    kind = op[0]
    packed = repo.common_dir / "packed-refs"
    if kind == "set":
        git(w, "update-ref", op[1], oids[op[2]], check=False)
    elif kind == "del":
        git(w, "update-ref", "-d", op[1], check=False)
    elif kind == "sym":
        git(w, "symbolic-ref", op[1], op[2], check=False)
    elif kind == "head":
        git(w, "symbolic-ref", "HEAD", op[1], check=False)
    elif kind == "detach":
        _write(repo.common_dir / "HEAD", oids[op[2] % 2].encode() + b"\n")
    elif kind == "pack":
        git(w, "pack-refs", "--all", check=False)
    elif kind == "loose":  # a file written by hand, as a tool could: the bytes given
        _write(repo.common_dir / op[1], op[2])
    elif kind == "unsorted" and packed.exists():
        lines = packed.read_bytes().splitlines(keepends=True)
        head = [b"# pack-refs with: peeled fully-peeled sorted \n"]
        body = [ln for ln in lines if not ln.startswith((b"#", b"^"))]
        packed.write_bytes(b"".join(head + body[::-1]))
    elif kind == "twice" and packed.exists():
        data = packed.read_bytes()
        body = [ln for ln in data.splitlines(keepends=True) if not ln.startswith((b"#", b"^"))]
        if body:
            packed.write_bytes(data + body[0].replace(body[0][:40], oids[1].encode()))
    elif kind == "packed":  # packed-refs rewritten whole between two reads
        packed.write_bytes(op[1])


_name = st.sampled_from(NAMES)
_content = st.sampled_from([
    b"", b"\n", b"ref: refs/heads/main\n", b"ref: refs/heads/gone\n", b"ref:refs/heads/a\n",
    b"ref: refs/heads/a", b"ref: HEAD\n", b"zzzz\n", b"e" * 40 + b"\n", b" " + b"e" * 40 + b"\n",
    b"E" * 40 + b"\n", b"e" * 40 + b" trailing\n", b"e" * 40, b"e" * 64 + b"\n",
])
_packed_body = st.sampled_from([
    b"", b"# pack-refs with: peeled fully-peeled sorted \n",
    b"# pack-refs with: peeled fully-peeled sorted \n" + b"e" * 40 + b" refs/heads/a\n",
    b"# pack-refs with: peeled \n" + b"e" * 40 + b" refs/heads/z\n"
    + b"e" * 40 + b" refs/heads/a\n",
    b"e" * 40 + b" refs/heads/a\n^" + b"e" * 40 + b"\n",
    b"# something else\n" + b"e" * 40 + b" refs/heads/a\n",
    b"e" * 40 + b" refs/heads/a",  # no final newline
])
OPS = st.one_of(
    st.tuples(st.just("set"), _name, st.integers(0, 4)),
    st.tuples(st.just("del"), _name),
    st.tuples(st.just("sym"), _name, st.sampled_from([*NAMES, "refs/heads/gone"])),
    st.tuples(st.just("head"), st.sampled_from(["refs/heads/main", "refs/heads/a",
                                                "refs/heads/unborn", "refs/tags/v1"])),
    st.tuples(st.just("detach"), st.integers(0, 1), st.integers(0, 1)),
    st.tuples(st.just("pack")),
    st.tuples(st.just("loose"), _name, _content),
    st.tuples(st.just("unsorted")),
    st.tuples(st.just("twice")),
    st.tuples(st.just("packed"), _packed_body),
)


# No shrinking: each example is a real repository and dozens of git processes; a failure is
# reported as generated (the op list is short). 20 random examples: each rule a reader
# could skip that random examples reach only now and then is an explicit example below (it
# fails with that rule broken, where 40 random examples on fresh seeds mostly passed); one
# they reach often (a dangling symbolic ref is no ref) fails within 20 on fresh seeds.
@settings(max_examples=20, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=1, max_size=8))
# The states a reader that skips one of git's rules would misread, run every time (random
# examples come to each only now and then): a full name found by git's dwim reading under
# another prefix; packed-refs claiming sorted and not; one name packed three times.
@example(ops=[("set", "refs/heads/refs/uet/ledger/r2", 0), ("set", "refs/tags/refs/heads/gone", 1),
              ("set", "refs/remotes/refs/heads/far/HEAD", 0), ("set", "refs/refs/heads/twice", 1)])
@example(ops=[("set", "refs/heads/a", 1), ("pack",), ("unsorted",)])
@example(ops=[("packed", b"# pack-refs with: peeled fully-peeled sorted \n" + b"e" * 40
               + b" refs/heads/a\n" + b"d" * 40 + b" refs/heads/a\n" + b"e" * 40
               + b" refs/heads/a\n")])
# And the rules random examples reach least often: a pattern matches at a slash (packed
# refs/heads/a-b is not under refs/heads/a), a loose ref hides its packed copy, an upper-case
# id is read as the lower-case one; HEAD naming a tag is no branch; a packed-refs with
# another comment than git's header, or with its last line unterminated, is git's to read.
@example(ops=[("set", "refs/heads/a-b", 0), ("set", "refs/heads/a", 1), ("pack",),
              ("set", "refs/heads/a", 0), ("loose", "refs/uet/ledger/r1", b"E" * 40 + b"\n")])
@example(ops=[("head", "refs/tags/v1"),
              ("packed", b"# something else\n" + b"e" * 40 + b" refs/heads/a\n"),
              ("packed", b"e" * 40 + b" refs/heads/a")])
def test_reads_are_what_git_answers(template: Path, template_oids: list[str],
                                    tmp_path_factory: pytest.TempPathFactory,
                                    ops: list[tuple]) -> None:
    repo = _fresh(template, tmp_path_factory.mktemp("ex") / "r")
    oids = template_oids
    _same_as_git(repo)
    for op in ops:
        _apply(repo, op, oids)
        _same_as_git(repo)


@pytest.mark.parametrize("packed", [None, b"e" * 40 + b" refs/heads/a"])  # unterminated
def test_batched_git_answers_are_rev_parse_answers(template: Path, tmp_path: Path,
                                                   packed: bytes | None) -> None:
    """The oracle above: its batched answers are ``rev-parse --verify``'s, name by name, for
    refs to commits, trees, tags and absent objects, symbolic, dwim-found, describe-like,
    broken, and with a packed-refs git cannot read."""
    repo = _fresh(template, tmp_path / "r")
    w, refs = repo.workdir, repo.common_dir / "refs"
    head, parent, tree, tag, absent = _oids(repo)
    for name, oid in [("refs/uet/ledger/r2", tree), ("refs/tags/v1", tag), ("refs/uet/ledger/r1",
                      parent), ("refs/heads/refs/uet/ledger/r2", head),
                      ("refs/remotes/refs/heads/far/HEAD", head), ("refs/heads/x-g1234", head)]:
        git(w, "update-ref", name, oid)
    git(w, "pack-refs", "--all")
    _write(refs / "uet" / "queued" / "r1" / "ws", absent.encode() + b"\n")
    _write(refs / "heads" / "a-b", b"ref: refs/uet/queued/r1/ws\n")
    _write(refs / "refs" / "heads" / "twice", b"zzzz\n")
    _write(refs / "tags" / "refs" / "heads" / "gone", b"ref: refs/heads/gone\n")
    if packed is not None:
        (repo.common_dir / "packed-refs").write_bytes(packed)
    names = [*QUERIES, "refs/heads/x", "refs/heads/a-b^{tree}", "refs/heads/main^{tree}"]
    batched = _git_rev_parses(repo, names, names)
    one_by_one = {q: _git_rev_parse(repo, q) for q in [*names, *(f"{n}^{{commit}}"
                                                                  for n in names)]}
    assert batched == one_by_one
    if packed is None:  # else git reads no ref at all
        assert {head, parent, tree, tag, absent} <= set(batched.values())


def _no_git(monkeypatch: pytest.MonkeyPatch) -> None:
    # With no git to start, a read that started one would fail: what passes was in process.
    monkeypatch.setenv("PATH", "/nonexistent")


def test_plain_reads_start_no_process(template: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _fresh(template, tmp_path / "r")
    w = repo.workdir
    head = git(w, "rev-parse", "HEAD")
    git(w, "update-ref", "refs/uet/ledger/r1", head)
    git(w, "pack-refs", "--all")
    git(w, "update-ref", "refs/uet/queued/r1/ws", head)
    tree = git(w, "rev-parse", "HEAD^{tree}")
    _no_git(monkeypatch)
    assert repo.read_ref("refs/heads/main") == head
    assert repo.read_ref("refs/uet/ledger/r1") == head  # packed
    assert repo.read_ref("refs/uet/ledger/none") is None
    assert repo.rev_parse("refs/uet/queued/r1/ws") == head
    assert repo.rev_parse(head) == head
    assert repo.rev_parse(tree) is None
    assert repo.current_branch() == "main"
    assert repo.list_refs("refs/uet/") == {"refs/uet/ledger/r1": head,
                                           "refs/uet/queued/r1/ws": head}
    repo.trusted_filters()
    assert repo._filters_now(w, ()) == repo.trusted_filters()


def test_what_only_git_can_judge_goes_to_git(template: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _fresh(template, tmp_path / "r")
    w = repo.workdir
    head = git(w, "rev-parse", "HEAD")
    cases = {
        "refs/heads/x-g1234": None,  # absent, and git reads it as `describe` output
        "HEAD": head,  # not a full ref name
        "refs/bisect/bad": head,  # per-worktree
        "refs/heads/main^{tree}": git(w, "rev-parse", "HEAD^{tree}"),
    }
    git(w, "update-ref", "refs/bisect/bad", head)
    for name, want in cases.items():
        assert _git_rev_parse(repo, name) == want
        with pytest.raises(looserefs.Unsure):
            looserefs.read_ref(repo.common_dir, name)
        assert repo.read_ref(name) == want
    # A symbolic link, a loop of symbolic refs, a ref file of garbage.
    heads = repo.common_dir / "refs" / "heads"
    os.symlink("main", heads / "linked")
    (heads / "loop1").write_text("ref: refs/heads/loop2\n")
    (heads / "loop2").write_text("ref: refs/heads/loop1\n")
    (heads / "junk").write_text("not an id\n")
    for name in ("refs/heads/linked", "refs/heads/loop1", "refs/heads/junk"):
        with pytest.raises(looserefs.Unsure):
            looserefs.read_ref(repo.common_dir, name)
        assert repo.read_ref(name) == _git_rev_parse(repo, name)
    assert for_each_ref(repo) == for_each_ref_git(repo)
    assert repo.refs_in_process(()) is None
    # No git on PATH: what git must judge now fails loudly rather than answer from the files.
    _no_git(monkeypatch)
    with pytest.raises(OSError):
        repo.read_ref("refs/heads/junk")


def test_other_ref_storage_and_environment_go_to_git(template: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _fresh(template, tmp_path / "r")
    assert repo.files_refs() == repo.common_dir
    monkeypatch.setenv("GIT_DIR", str(repo.common_dir))
    assert repo.files_refs() is None
    monkeypatch.delenv("GIT_DIR")
    (repo.common_dir / "reftable").mkdir()
    assert repo.files_refs() is None
    (repo.common_dir / "reftable").rmdir()
    with (repo.common_dir / "config").open("a") as f:
        f.write("[extensions]\n\trefStorage = files\n")
    assert repo.files_refs() is None


def test_a_tool_replacing_the_main_git_dir_link_sends_reads_to_git(
        template: Path, tmp_path: Path) -> None:
    """The reads follow git's own discovery: a ``.git`` that is no longer the repository's
    git dir (a tool swapped it for a file pointing elsewhere) is git's to read."""
    repo = _fresh(template, tmp_path / "r")
    other = _fresh(template, tmp_path / "other")
    git(other.workdir, "update-ref", "refs/heads/elsewhere", "HEAD")
    real = repo.workdir / ".git"
    real.rename(repo.workdir / ".git-real")
    real.write_text(f"gitdir: {other.common_dir}\n")
    assert repo.files_refs() is None
    assert repo.read_ref("refs/heads/elsewhere") == _git_rev_parse(repo, "refs/heads/elsewhere")


def test_linked_worktree_head_is_its_own(template: Path, tmp_path: Path) -> None:
    repo = _fresh(template, tmp_path / "r")
    wt = tmp_path / "wt"
    git(repo.workdir, "worktree", "add", "-q", "-b", "side", str(wt))
    from_wt = Repo.open(wt)
    assert from_wt.current_branch() == _git_branch(from_wt) == "main"
    assert from_wt.read_ref("refs/heads/side") == _git_rev_parse(repo, "refs/heads/side")
    assert for_each_ref(from_wt) == for_each_ref_git(from_wt)


def test_packed_refs_rewritten_between_two_reads(template: Path, tmp_path: Path) -> None:
    repo = _fresh(template, tmp_path / "r")
    w = repo.workdir
    one, two = git(w, "rev-parse", "HEAD"), git(w, "rev-parse", "HEAD~1")
    git(w, "update-ref", "refs/uet/ledger/r1", one)
    git(w, "pack-refs", "--all")
    assert repo.read_ref("refs/uet/ledger/r1") == one
    packed = repo.common_dir / "packed-refs"
    # Same size, same name, another id: a reader caching on size or mtime would miss it.
    before = packed.stat()
    packed.write_bytes(packed.read_bytes().replace(one.encode(), two.encode()))
    os.utime(packed, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert repo.read_ref("refs/uet/ledger/r1") == two == _git_rev_parse(repo, "refs/uet/ledger/r1")
    assert repo.list_refs("refs/uet/") == _git_for_each_ref(repo, ("refs/uet/",))


@pytest.mark.parametrize("body", [
    # Claimed sorted, one name three times side by side: git's binary search picks the middle
    # one, a reader keeping the first or last line another.
    b"# pack-refs with: peeled fully-peeled sorted \n{one} refs/heads/a\n{two} refs/heads/a\n"
    b"{one} refs/heads/a\n",
    # Claimed sorted and not: git's binary search misses refs/heads/a.
    b"# pack-refs with: peeled fully-peeled sorted \n{one} refs/heads/z\n{two} refs/heads/a\n",
    # Not claimed sorted: git sorts it and finds both.
    b"# pack-refs with: peeled \n{one} refs/heads/z\n{two} refs/heads/a\n",
    # A ref to an object the repository does not have: listed all the same.
    b"{one} refs/heads/a\n" + b"e" * 40 + b" refs/heads/b\n",
])
def test_planted_packed_refs(template: Path, tmp_path: Path, body: bytes) -> None:
    repo = _fresh(template, tmp_path / "r")
    one, two = _oids(repo)[:2]
    git(repo.workdir, "pack-refs", "--all")
    (repo.common_dir / "packed-refs").write_bytes(
        body.replace(b"{one}", one.encode()).replace(b"{two}", two.encode()))
    (repo.common_dir / "refs" / "heads" / "c").write_bytes(b"d" * 40 + b"\n")  # missing too
    for name in ("refs/heads/a", "refs/heads/z", "refs/heads/b", "refs/heads/c"):
        assert repo.read_ref(name) == _git_rev_parse(repo, name), name
    for pats in PATTERNS:
        try:
            ours: dict[str, str] | str = for_each_ref(repo, *pats)
        except GitError:
            ours = "git failed"
        assert ours == _git_for_each_ref(repo, pats), pats


def test_a_pattern_naming_one_ref_is_read_in_process(template: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _fresh(template, tmp_path / "r")
    head = git(repo.workdir, "rev-parse", "HEAD")
    git(repo.workdir, "update-ref", "refs/uet/ledger/r1", head)
    want = _git_for_each_ref(repo, ("refs/uet/ledger/r1", "refs/heads/main"))
    _no_git(monkeypatch)
    assert for_each_ref(repo, "refs/uet/ledger/r1", "refs/heads/main") == want
