"""Listing the refs outside one prefix without starting git: the files backend read in process.

The tamper guard lists every ref outside ``refs/uet/`` before and after each tool of an
unsandboxed run. ``git for-each-ref`` would read all of uet's own refs too (thousands in a big
run) and costs a process; this reads the loose refs under ``refs/`` without descending into the
skipped prefix, then ``packed-refs`` (one line per ref; the skipped ones are dropped by a
string test). Loose refs are read before ``packed-refs``, as git does: ``git pack-refs``
writes ``packed-refs`` before it deletes the loose files, and a deletion rewrites
``packed-refs`` before it deletes the loose file, so no ref is ever missed in between.

Only what this can read with certainty is answered: a symbolic link, an unreadable or
malformed file, a name git would not accept, a symbolic ref whose target is not found among
the refs read, or a repository using another ref storage makes ``refs_outside`` return None,
and the caller asks git (``refs.for_each_ref``), which then decides as it always has.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Iterable
from pathlib import Path

_OID = re.compile(rb"[0-9a-f]{40}(?:[0-9a-f]{24})?")
# Conservative: what ``git check-ref-format`` accepts, minus what is rare enough to leave to git.
_COMPONENT = re.compile(r"[A-Za-z0-9_+,=%-][A-Za-z0-9._+,=%@-]*")
_MAX_SYMREF_DEPTH = 5


class Unsure(Exception):
    """Something git itself must judge."""


_Unsure = Unsure

def _name_ok(name: str) -> bool:
    if ".." in name or "@{" in name or name.endswith("/"):
        return False
    return all(_COMPONENT.fullmatch(c) and not c.endswith((".lock", "."))
               for c in name.split("/"))


def _names_ok(names: Iterable[str]) -> bool:
    """``all(_name_ok(n) for n in names)``, each directory judged once: thousands of refs
    share a few directories (``refs/uet/<state>/RUN/``), so only each leaf is checked."""
    dirs: dict[str, bool] = {}
    for name in names:
        parent, _, leaf = name.rpartition("/")
        ok = dirs.get(parent)
        if ok is None:
            ok = dirs[parent] = not parent or _name_ok(parent)
        # ".." and "@{" cannot span the slash; an empty leaf (a name ending in "/") fails.
        if not ok or not _name_ok(leaf):
            return False
    return True


# O_NOFOLLOW: a ref file that became a symbolic link since it was listed is git's to read;
# O_NONBLOCK: one that became a FIFO does not hang the reader (it reads as empty: Unsure).
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _read_ref_file(name: str, dir_fd: int) -> bytes | None:
    """The first 4096 bytes of the ref file ``name`` in the directory ``dir_fd`` (opened
    relative to it: no walk of the whole path per file; one ``read``: a ref is 41 bytes, and
    a short read can only make a value git's reading would not match, which is Unsure); None
    when it is gone."""
    try:
        fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _Unsure from exc
    try:
        return os.read(fd, 4096)
    except OSError as exc:
        raise _Unsure from exc
    finally:
        os.close(fd)


def _loose(common: Path, skip: str, out: dict[str, bytes], start: str = "refs/") -> None:
    """Every loose ref file under ``start`` (its content) but those under ``skip``. The kind
    of each entry comes from the directory listing (``d_type``; ``lstat`` only where the
    file system does not say)."""
    stack = [start]
    while stack:
        rel = stack.pop()
        if rel == skip:
            continue
        try:
            dir_fd = os.open(common / rel, _DIR_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            continue  # removed meanwhile (an empty directory git pruned), or a ref file
        except OSError as exc:
            raise _Unsure from exc
        try:
            _loose_in(dir_fd, rel, skip, out, stack)
        finally:
            os.close(dir_fd)


def _loose_in(dir_fd: int, rel: str, skip: str, out: dict[str, bytes],
              stack: list[str]) -> None:
    """``_loose`` in one directory: its ref files into ``out``, its directories onto
    ``stack``."""
    try:
        with os.scandir(dir_fd) as it:
            entries = list(it)
    except OSError as exc:
        raise _Unsure from exc
    for e in entries:
        name = e.name
        if name.startswith(".") or name.endswith(".lock"):
            continue  # what git's loose-ref reader skips too
        try:
            if e.is_dir(follow_symlinks=False):
                stack.append(f"{rel}{name}/")
                continue
            regular = e.is_file(follow_symlinks=False)
        except OSError as exc:
            raise _Unsure from exc
        if not regular:
            # A symbolic link or stranger (git decides), or gone meanwhile (skipped): ask.
            try:
                mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _Unsure from exc
            if stat.S_ISDIR(mode):
                stack.append(f"{rel}{name}/")
                continue
            if not stat.S_ISREG(mode):
                raise _Unsure(f"{rel}{name}")
        ref = rel + name
        if ref.startswith(skip):
            continue
        data = _read_ref_file(name, dir_fd)
        if data is not None:  # else deleted meanwhile: packed-refs (read after) holds it
            out[ref] = data


def _packed(common: Path, skip: str) -> dict[str, bytes]:
    try:
        data = (common / "packed-refs").read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise _Unsure from exc
    data = _cut(data, skip.encode())
    out: dict[str, bytes] = {}
    for line in data.split(b"\n"):
        if not line or line[0] in b"#^":
            continue  # the header and peeled lines
        oid, sp, name = line.partition(b" ")
        if not sp or not _OID.fullmatch(oid):
            raise _Unsure("packed-refs line")
        n = name.decode(errors="surrogateescape")
        if n in out:
            raise _Unsure(n)  # git never writes a name twice; which one it reads is its call
        if not n.startswith(skip):
            out[n] = oid
    return out


def _cut(data: bytes, skip: bytes) -> bytes:
    """``packed-refs`` without the block of lines under ``skip`` when git wrote it sorted (its
    header says so): one search instead of a loop over thousands of uet's own lines.

    The header is the file's word, and a tool can write the file: the block is dropped only
    when every line in it is a ref under ``skip`` or a peeled line (counted, in C), since git
    lists any other line hidden there. Otherwise the whole file is read line by line.
    """
    if not data.startswith(b"# pack-refs with:") or b" sorted" not in data[:data.find(b"\n")]:
        return data
    first = data.find(b" " + skip)
    if first < 0:
        return data
    last = data.rfind(b" " + skip)
    start = data.rfind(b"\n", 0, first) + 1
    end = data.find(b"\n", last)
    block = data[start:end if end >= 0 else len(data)]
    refs = block.count(b" " + skip)
    # Every space starts " refs/uet/..." and every line is a ref or a peeled line: git reads a
    # ref line as "<oid> <name>" (one space), so no line of another name is hidden in it.
    if block.count(b" ") != refs or block.count(b"\n") + 1 != refs + block.count(b"\n^"):
        return data
    return data[:start] + (data[end + 1:] if end >= 0 else b"")


def _resolve(name: str, loose: dict[str, bytes], packed: dict[str, bytes]) -> str:
    for _ in range(_MAX_SYMREF_DEPTH):
        value = loose[name].strip() if name in loose else packed.get(name)
        if value is None:
            raise _Unsure(name)  # a dangling symbolic ref, or one into the skipped prefix
        if value.startswith(b"ref:"):
            name = value[4:].strip().decode(errors="surrogateescape")
            continue
        if not _OID.fullmatch(value):
            raise _Unsure(name)
        return value.decode()
    raise _Unsure(name)


def refs_outside(common_dir: Path, skip: str = "refs/uet/") -> dict[str, str] | None:
    """``{refname: oid}`` of every ref (symbolic ones resolved, as ``git for-each-ref``'s
    ``%(objectname)``) whose name does not start with ``skip`` (a prefix ending in ``/``),
    sorted by name; None when git must be asked (see the module doc)."""
    common = Path(common_dir)
    try:
        if _reftable(common):
            return None
        loose: dict[str, bytes] = {}
        _loose(common, skip, loose)
        packed = _packed(common, skip)
        out: dict[str, str] = {}
        names = sorted(loose.keys() | packed.keys())
        if not _names_ok(names):
            return None
        for name in names:
            out[name] = _resolve(name, loose, packed)
    except _Unsure:
        return None
    return out


def _reftable(common: Path) -> bool:
    """A ``reftable`` directory: refs not in files (git >= 2.45); also any doubt about it."""
    try:
        os.lstat(common / "reftable")
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return True


# What git's files backend reads for one name, exactly (see ``read_ref``).
_OID40 = re.compile(rb"[0-9a-f]{40}\n?")
_SYMREF = re.compile(rb"ref: (refs/[^\n]+)\n?")
# A packed-refs git reads as this does: an optional header, then ref lines each optionally
# followed by its peeled line, every line ending in LF. Anything else (git may die on it, or
# read it another way) is left to git.
_PACKED_FILE = re.compile(
    rb"(?:# pack-refs with:[^\n]*\n)?(?:[0-9a-f]{40} [^\n ]+\n(?:\^[0-9a-f]{40}\n)?)*")
_PACKED_LINE = re.compile(rb"^([0-9a-f]{40}) ([^\n]+)$", re.M)
# Refs that live in each worktree's own git dir (git's ``is_per_worktree_ref``).
_PER_WORKTREE = ("refs/bisect/", "refs/worktree/", "refs/rewritten/")
# ``name-g<hex>`` is read by git as ``git describe`` output (an abbreviated object id) when no
# ref of that name exists: only git can tell what it then names.
_DESCRIBE = re.compile(r"-g[0-9a-fA-F]*$")


def plain_name(name: str) -> bool:
    """A shared ref name (``refs/...``, not per-worktree) git reads as just that name."""
    return (name.startswith("refs/") and not name.startswith(_PER_WORKTREE)
            and _name_ok(name) and len(name) < 1000)


# A cached answer is used only while every file it was read from keeps the identity and times
# it had (``stat_key``), and only when those files were last changed a while before
# (``SETTLED_NS``): the kernel stamps a change with a coarse clock (one timer tick, at most
# 10 ms), so a second change within the tick of the first can leave size and times as they
# were; a change made after a file had settled gets a later stamp, and the key differs.
SETTLED_NS = 100_000_000


def stat_key(path: str) -> tuple[int, ...] | None:
    """``path``'s device, inode, mode, size, modification and change times (a final symbolic
    link not followed); ``()`` when nothing is there; None when it changed within
    ``SETTLED_NS`` of now, or cannot be looked at (then nothing may be cached on it)."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return ()
    except OSError:
        return None
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < SETTLED_NS:
        return None
    return (st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


# packed-refs path -> (its stat_key, what packed_index read from it). Bounded: a process that
# opens many repositories (the test suite) keeps only the last ones.
_PACKED: dict[str, tuple[tuple[int, ...], dict[str, bytes]]] = {}
_PACKED_MAX = 64


def packed_index(common: Path) -> dict[str, bytes]:
    """``{name: oid}`` of ``packed-refs`` when git reads it as written: well formed, no name
    twice, and sorted when its header says so (git then binary-searches it, and a false claim
    makes git miss refs a linear read finds). ``Unsure`` otherwise. The same dict while the
    file is unchanged (``stat_key``): callers only read it."""
    path = os.path.join(common, "packed-refs")
    key = stat_key(path)
    if key is not None:
        hit = _PACKED.get(path)
        if hit is not None and hit[0] == key:
            return hit[1]
    index = _read_packed_index(path)
    if key is not None:
        if len(_PACKED) >= _PACKED_MAX:
            _PACKED.clear()
        _PACKED[path] = (key, index)
    return index


def _read_packed_index(path: str) -> dict[str, bytes]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise Unsure from exc
    if not _PACKED_FILE.fullmatch(data):
        raise Unsure("packed-refs")
    pairs = _PACKED_LINE.findall(data)
    names = [n for _, n in pairs]
    if len(set(names)) != len(names):
        raise Unsure("packed-refs: a name twice")
    header = data[:data.find(b"\n")] if data.startswith(b"#") else b""
    if b" sorted " in header + b" " and names != sorted(names):
        raise Unsure("packed-refs: not sorted as its header says")
    return {n.decode(errors="surrogateescape"): oid for oid, n in pairs}


def _loose_value(common: Path, name: str) -> bytes | None:
    """The loose ref file's content; None when there is none (git then reads packed-refs)."""
    path = common / name
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise Unsure from exc
    if stat.S_ISDIR(mode):
        return None  # git reads a directory where a ref would be as "not loose"
    if not stat.S_ISREG(mode):
        raise Unsure(name)  # a symbolic link (git may read it as a symbolic ref) or stranger
    try:
        with open(path, "rb") as f:
            return f.read(4096)
    except FileNotFoundError:
        return None  # deleted meanwhile: git deletes from packed-refs first, read after
    except OSError as exc:
        raise Unsure from exc


def _values(common: Path, names: list[str]) -> dict[str, bytes | None]:
    """Each name's raw value, loose files first and then packed-refs once (the order git's
    writers make safe: a ref is never missing from both at any moment)."""
    out = {n: _loose_value(common, n) for n in names}
    if any(v is None for v in out.values()):
        packed = packed_index(common)
        for n, v in out.items():
            if v is None and n in packed:
                out[n] = packed[n]
    return out


def _follow(common: Path, name: str, value: bytes) -> str:
    """The object id ``value`` (``name``'s content) resolves to, following symbolic refs."""
    for _ in range(_MAX_SYMREF_DEPTH - 1):
        if _OID40.fullmatch(value):
            return value[:40].decode()
        m = _SYMREF.fullmatch(value)
        if not m:
            raise Unsure(name)  # not a ref git reads as clean: broken, or another format
        name = m[1].decode(errors="surrogateescape")
        if not plain_name(name):
            raise Unsure(name)
        got = _values(common, [name])[name]
        if got is None:
            raise Unsure(name)  # dangling: git warns and tries its other readings
        value = got
    raise Unsure(name)


def plain_store(common: Path) -> bool:
    """The refs of ``common`` are plain files git reads as this module does: no reftable, no
    ``extensions.refStorage`` or ``objectFormat`` (SHA-256 ids) in the config, and a
    directory git takes for a repository at all (``git_directory``)."""
    if _reftable(common) or not git_directory(common):
        return False
    try:
        config = (common / "config").read_bytes().lower()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return b"refstorage" not in config and b"objectformat" not in config


def git_directory(common: Path) -> bool:
    """``common`` is what git's ``is_git_directory`` accepts, surely: ``objects/`` and
    ``refs/`` directories and a ``HEAD`` its ``validate_headref`` reads as valid (a regular
    file ``ref: refs/...`` or a 40-hex id). Without it git refuses to run ("not a git
    repository": a tool's ``git update-ref -d`` of a ref holding ``ref: HEAD`` deletes
    ``HEAD``), and the files alone would still answer. False when in doubt (a symbolic-link
    ``HEAD``, an upper-case id): git then says what it says."""
    try:
        if not (os.path.isdir(common / "objects") and os.path.isdir(common / "refs")):
            return False
        head = common / "HEAD"
        if not stat.S_ISREG(os.lstat(head).st_mode):
            return False
        with open(head, "rb") as f:
            data = f.read(255)
    except OSError:
        return False
    if data.startswith(b"ref:"):
        return data[4:].lstrip(b" \t\n\v\f\r").startswith(b"refs/")
    return _OID40.match(data) is not None  # a prefix of 40 hex digits, as get_oid_hex reads


def read_ref(common: Path, name: str) -> str | None:
    """What ``git rev-parse --verify --quiet NAME`` prints for a full ref name (its object id,
    symbolic refs followed, the object not read), or None when git prints nothing. git reads
    ``NAME`` as a revision: when no ref of exactly that name exists it tries
    ``refs/NAME``, ``refs/tags/NAME``, ... (its dwim rules); this answers None only when all
    of them are surely absent. ``Unsure`` wherever git must judge. ``common`` is a git dir
    that passed ``plain_store``; this reads no config."""
    if not plain_name(name):
        raise Unsure(name)
    candidates = [name, f"refs/{name}", f"refs/tags/{name}", f"refs/heads/{name}",
                  f"refs/remotes/{name}", f"refs/remotes/{name}/HEAD"]
    values = _values(common, candidates)
    first = values[name]
    if first is not None:
        return _follow(common, name, first)
    if any(v is not None for v in values.values()) or _DESCRIBE.search(name):
        raise Unsure(name)
    return None


def head_branch(common: Path) -> str | None:
    """The full name of the branch ``common``'s own ``HEAD`` names (``ref: refs/heads/X``, the
    branch plain or unborn), None when ``HEAD`` is detached; ``Unsure`` otherwise."""
    head = _loose_value(common, "HEAD")
    if head is None:
        raise Unsure("HEAD")
    if _OID40.fullmatch(head):
        return None
    m = _SYMREF.fullmatch(head)
    if not m:
        raise Unsure("HEAD")
    name = m[1].decode(errors="surrogateescape")
    if not name.startswith("refs/heads/") or not plain_name(name):
        raise Unsure(name)
    value = _values(common, [name])[name]
    if value is not None and not _OID40.fullmatch(value):
        raise Unsure(name)  # a symbolic ref in turn: git follows it to its end
    return name


def short_branch(common: Path, full: str) -> str:
    """``git symbolic-ref --short``'s name for ``refs/heads/X``: ``X`` when no other reading
    of ``X`` (``X``, ``refs/X``, ``refs/tags/X``, ``refs/remotes/X[/HEAD]``) exists in any
    form (git shortens less when one resolves); ``Unsure`` if any might."""
    short = full.removeprefix("refs/heads/")
    others = (short, f"refs/{short}", f"refs/tags/{short}", f"refs/remotes/{short}",
              f"refs/remotes/{short}/HEAD")
    for other in others:
        try:
            os.lstat(common / other)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise Unsure(other) from exc
        raise Unsure(other)
    if any(n in packed_index(common) for n in others):
        raise Unsure(short)
    return short


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    # ``git for-each-ref``'s literal patterns: the name itself or a prefix ending at a slash.
    return not patterns or any(
        name.startswith(p) and (len(name) == len(p) or p.endswith("/") or name[len(p)] == "/")
        for p in patterns)


def replace_refs(common: Path) -> bool:
    """Whether any ``refs/replace/`` ref may exist (git then reads objects through them)."""
    try:
        os.lstat(common / "refs" / "replace")
        return True
    except FileNotFoundError:
        pass
    except OSError:
        return True
    return any(n.startswith("refs/replace/") for n in packed_index(common))


def list_refs(common: Path, patterns: tuple[str, ...]) -> dict[str, str]:
    """``git for-each-ref --format='%(objectname) %(refname)' PATTERNS`` in process, sorted:
    literal patterns under ``refs/`` only; symbolic refs resolved; objects not read (git lists
    a ref to a missing object with this format too). ``Unsure`` wherever git must judge
    (``common`` passed ``plain_store``)."""
    if not all(
            p.startswith("refs/") and not any(c in p for c in "*?[\\") for p in patterns):
        raise Unsure("patterns")
    loose: dict[str, bytes] = {}
    for p in patterns or ("refs/",):
        base = p if p.endswith("/") else p + "/"
        if not p.endswith("/"):
            value = _loose_value(common, p)
            if value is not None:
                loose[p] = value
        _loose_under(common, base, loose)
    packed = packed_index(common)
    out: dict[str, str] = {}
    names = sorted(loose.keys() | {n for n in packed if _matches(n, patterns)})
    if not _names_ok(names):
        raise Unsure("a name")
    for name in names:
        if name.startswith(_PER_WORKTREE):
            raise Unsure(name)
        raw = loose.get(name)
        out[name] = _follow(common, name, raw if raw is not None else packed[name])
    return out


def _loose_under(common: Path, base: str, out: dict[str, bytes]) -> None:
    """Every loose ref file under ``base`` (a directory path ending in ``/``)."""
    _loose(common, "\0", out, start=base)


__all__ = ["SETTLED_NS", "Unsure", "git_directory", "head_branch", "list_refs", "packed_index",
           "plain_name", "plain_store", "read_ref", "refs_outside", "replace_refs",
           "short_branch", "stat_key"]
